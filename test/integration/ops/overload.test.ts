// Overload: the server-wide waiting bound (--max-queued) refuses at once with
// 429 queue_full, and a request that does not start within
// --queue-timeout-ms is cancelled in the engine and answered 503
// queue_timeout before any response header, streaming or not. One slot, held
// by a stream far longer than anything the test waits for, makes "busy" certain.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { APIError } from "openai";
import { createParser } from "eventsource-parser";
import { scrape, sumOf } from "../../../bench/promText.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const ONE_SLOT = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "16384"];

interface Blocker {
  /** Resolves once the stream's first frame arrived: it holds the only slot. */
  started: Promise<void>;
  /** Aborts the stream and waits until it is over. */
  stop(): Promise<void>;
}

/** A stream of 16,000 tokens holding the only slot until stop(). */
function block(url: string): Blocker {
  const ac = new AbortController();
  let onStart!: () => void;
  let onFail!: (err: unknown) => void;
  const started = new Promise<void>((resolve, reject) => ((onStart = resolve), (onFail = reject)));
  const done = (async () => {
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 16_000, ignore_eos: true, stream: true }),
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      const parser = createParser({ onEvent: () => onStart() });
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
      onFail(new Error("the blocking stream ended on its own"));
    } catch (err) {
      if (!ac.signal.aborted) onFail(err);
    }
  })();
  return {
    started,
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

function post(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });
}

const chat = (stream: boolean) => ({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 3, stream });

async function rejections(url: string, reason: string): Promise<number> {
  return sumOf(await scrape(url), "llamux_rejections_total", { reason });
}

describe("server-wide queue bound", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer([...ONE_SLOT, "--max-queued", "1", "--queue-timeout-ms", "600000"]);
  });
  after(async () => {
    await t?.close();
  });

  test("with the slot busy and one request waiting, the next gets 429 queue_full at once; the waiting one runs when the slot frees", async () => {
    const blocker = block(t.url);
    const waiterAbort = new AbortController();
    try {
      await blocker.started;
      const waiting = post(t.url, chat(false), waiterAbort.signal);
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 1, 10_000, "the second request to wait in the engine");

      const refused = await post(t.url, chat(true));
      assert.equal(refused.status, 429);
      assert.match(refused.headers.get("content-type") ?? "", /application\/json/, "no SSE stream was opened");
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.equal(refused.headers.get("retry-after-ms"), "1000");
      const err = ((await refused.json()) as { error: { code: string; type: string; message: string } }).error;
      assert.equal(err.code, "queue_full");
      assert.equal(err.type, "rate_limit_error");
      assert.match(err.message, /server is at capacity: 1 requests are waiting for 1 slots/);
      assert.equal(await rejections(t.url, "server_queue_full"), 1);

      await blocker.stop();
      const res = await waiting;
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
      // Every place was given back: two requests may be in (one running, one waiting) again.
      const again = await Promise.all([post(t.url, chat(false)), post(t.url, chat(false))]);
      assert.deepEqual(
        again.map((r) => r.status),
        [200, 200],
      );
      await Promise.all(again.map((r) => r.arrayBuffer()));
    } finally {
      waiterAbort.abort();
      await blocker.stop();
    }
  });

  test("a streaming client that leaves while it waits gives its place back", async () => {
    const blocker = block(t.url);
    const leaver = new AbortController();
    const nextAbort = new AbortController();
    try {
      await blocker.started;
      const left = post(t.url, chat(true), leaver.signal).catch((err: unknown) => err);
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 1, 10_000, "the stream to wait in the engine");
      leaver.abort();
      assert.ok((await left) instanceof Error);
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 0, 10_000, "the engine to drop it");
      await waitFor(
        async () => sumOf(await scrape(t.url), "llamux_requests_total", { endpoint: "/v1/chat", status: "499" }) === 1,
        10_000,
        "the server to see the client leave",
      );
      // With --max-queued 1 this one may wait only if the leaver's place was freed.
      const next = post(t.url, chat(false), nextAbort.signal);
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 1, 10_000, "the next request to wait, not be refused");
      await blocker.stop();
      const res = await next;
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(await rejections(t.url, "server_queue_full"), 1, "only the refusal of the first test");
    } finally {
      nextAbort.abort();
      await blocker.stop();
    }
  });
});

describe("--max-queued 0", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer([...ONE_SLOT, "--max-queued", "0"]);
  });
  after(async () => {
    await t?.close();
  });

  test("refuses as soon as no slot is free, and admits again once one is", async () => {
    const blocker = block(t.url);
    try {
      await blocker.started;
      const err = await t.client.chat.completions.create(chat(false) as never).then(
        () => assert.fail("expected 429"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof APIError);
      assert.equal(err.status, 429);
      assert.equal(err.code, "queue_full");
      await blocker.stop();
      const ok = await post(t.url, chat(false));
      assert.equal(ok.status, 200);
      await ok.arrayBuffer();
    } finally {
      await blocker.stop();
    }
  });
});

describe("--queue-timeout-ms", () => {
  let t: TestServer;
  before(async () => {
    // Long enough for the blocker itself to start on a loaded machine; the
    // warm-up request takes the first request's one-off costs out of its way.
    t = await startTestServer([...ONE_SLOT, "--max-queued", "1", "--queue-timeout-ms", "2000"]);
    const warm = await post(t.url, chat(false));
    assert.equal(warm.status, 200);
    await warm.arrayBuffer();
  });
  after(async () => {
    await t?.close();
  });

  test("a request that never started is cancelled in the engine and answered 503 queue_timeout, streaming or not", async () => {
    const blocker = block(t.url);
    try {
      await blocker.started;

      const streamed = await post(t.url, chat(true));
      assert.equal(streamed.status, 503, "a plain HTTP error: no SSE header went out before the request started");
      assert.match(streamed.headers.get("content-type") ?? "", /application\/json/);
      assert.equal(streamed.headers.get("retry-after"), "1");
      const err = ((await streamed.json()) as { error: { code: string; type: string; message: string } }).error;
      assert.equal(err.code, "queue_timeout");
      assert.equal(err.type, "server_error");
      assert.match(err.message, /waited 2000 ms for a free slot/);
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 0, 10_000, "the engine to drop the timed-out request");

      // Its waiting place was given back: with --max-queued 1 this one may wait
      // (else it would be refused with 429), and times out in turn.
      const plain = await t.client.chat.completions.create(chat(false) as never).then(
        () => assert.fail("expected 503"),
        (e: unknown) => e,
      );
      assert.ok(plain instanceof APIError);
      assert.equal(plain.status, 503);
      assert.equal(plain.code, "queue_timeout");
      await waitFor(async () => (await t.srv.engine.stats())?.waiting === 0, 10_000, "the engine to drop the second one");

      assert.equal(await rejections(t.url, "queue_timeout"), 2);
      assert.equal(await rejections(t.url, "server_queue_full"), 0);
      const stats = await t.srv.engine.stats();
      assert.equal(stats?.running, 1, "only the blocker ran");
    } finally {
      await blocker.stop();
    }
    await waitFor(async () => (await t.srv.engine.stats())?.slotsBusy === 0, 10_000, "the slot to free");
    const ok = await post(t.url, chat(false));
    assert.equal(ok.status, 200, "requests that start in time are served");
    await ok.arrayBuffer();
  });
});
