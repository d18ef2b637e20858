// A real native abort in the worker: TinyStories-656K's tokenizer cannot encode
// '#' and llama.cpp throws an uncaught std::out_of_range (see shared/models/SOURCES.md).
// The front must survive, fail in-flight requests with engine_restarted, and recover.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { MODELS, startTestServer, waitFor, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.tinyStories656K, "--slots", "2", "--ctx-per-slot", "512"]);
});
after(async () => {
  await t?.close();
});

describe("worker crash and recovery", () => {
  test("in-flight requests end with engine_restarted, /ready goes false, then the engine serves again", async () => {
    const firstPid = t.srv.engine.pid;
    const ok = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 4 });
    assert.equal(ok.choices.length, 1);

    // A long stream in flight when the worker dies gets an error frame.
    const stream = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 400,
      ignore_eos: true,
      stream: true,
    } as never);
    const streamOutcome = (async () => {
      try {
        for await (const _ of stream as unknown as AsyncIterable<unknown>) {
          // keep reading
        }
        return null;
      } catch (err) {
        return err;
      }
    })();

    let readySeenFalse = false;
    const watcher = waitFor(
      async () => {
        if ((await fetch(`${t.url}/ready`)).status === 503) readySeenFalse = true;
        return readySeenFalse;
      },
      10_000,
      "/ready to report not ready",
    );

    const crash = t.client.completions.create({ model: t.modelId, prompt: "# Chapter one", max_tokens: 4 });
    await assert.rejects(crash, (err: unknown) => {
      assert.ok(err instanceof OpenAI.APIError);
      assert.equal(err.status, 503);
      assert.equal(err.code, "engine_restarted");
      return true;
    });
    const streamErr = await streamOutcome;
    assert.ok(streamErr instanceof OpenAI.APIError, `stream should fail, got ${String(streamErr)}`);
    assert.match(String((streamErr as InstanceType<typeof OpenAI.APIError>).message), /restart/);
    await watcher;

    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 200, 30_000, "the engine to come back");
    assert.equal(t.srv.engine.restarts, 1);
    assert.notEqual(t.srv.engine.pid, firstPid);
    assert.match(await (await fetch(`${t.url}/metrics`)).text(), /^llamux_engine_restarts_total\{model="[^"]+"\} 1$/m);
    const after = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 4 });
    assert.equal(after.choices.length, 1);
  });

  test("a request waiting for a slot when the worker dies is sent again to the new worker and answered", async () => {
    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 200, 30_000, "the engine to be ready");
    const restarts = t.srv.engine.restarts;
    // Two long streams hold both slots, with output already sent: they cannot be replayed.
    const streams = await Promise.all(
      [0, 1].map(() =>
        t.client.chat.completions.create({
          model: t.modelId,
          messages: [{ role: "user", content: "Once upon a time" }],
          max_tokens: 400,
          ignore_eos: true,
          stream: true,
        } as never),
      ),
    );
    const outcomes = streams.map(async (stream) => {
      try {
        for await (const _ of stream as unknown as AsyncIterable<unknown>) {
          // keep reading
        }
        return null;
      } catch (err) {
        return err;
      }
    });
    // The victim waits for a slot: accepted by the worker, no output yet.
    const victim = t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 4 });
    await waitFor(async () => ((await t.srv.engine.stats())?.waiting ?? 0) >= 1, 10_000, "the victim to wait in the worker");
    const crash = t.client.completions.create({ model: t.modelId, prompt: "# Chapter two", max_tokens: 4 });
    await assert.rejects(crash, (err: unknown) => err instanceof OpenAI.APIError && err.status === 503 && err.code === "engine_restarted");
    for (const o of outcomes) assert.ok((await o) instanceof OpenAI.APIError, "the streams with output fail with the worker");
    const answered = await victim;
    assert.equal(answered.choices.length, 1);
    assert.ok(answered.usage!.completion_tokens > 0, "the victim was generated for, on the new worker");
    assert.equal(t.srv.engine.restarts, restarts + 1);
  });

  test("requests that arrive while restarting get a 503 with retry-after, not a hang", async () => {
    const crash = t.client.completions.create({ model: t.modelId, prompt: "100% sure", max_tokens: 2 });
    await assert.rejects(crash);
    const res = await fetch(`${t.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, prompt: "Hi", max_tokens: 2 }),
    });
    if (res.status === 503) {
      assert.equal(res.headers.get("retry-after"), "1");
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "engine_unavailable");
    } else {
      assert.equal(res.status, 200); // the worker was already back
    }
    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 200, 30_000, "the engine to come back");
  });
});
