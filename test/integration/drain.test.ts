// Graceful drain: close() lets a stream in flight finish while new requests
// get 503 and /ready says "draining"; past --drain-timeout-ms what is left is
// cut, and close() returns with the worker gone.
import assert from "node:assert/strict";
import http from "node:http";
import { describe, test } from "node:test";
import { createParser } from "eventsource-parser";
import { MODELS, startTestServer, waitFor } from "./helpers/server.js";

// One compute thread: llama.cpp's threads meet at a barrier after every
// operation, so on a machine whose cores are busy with other work two of them
// wait for each other's time slices (measured with two CPU hogs on this
// 2-core machine: about 450 ms a token on stories260K), and the 300-token
// stream below outlived the 60 s drain deadline. One thread has no barrier.
const ARGS = ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "512", "--threads", "1"];
// Room for a stream far longer than any drain deadline below, even on a fast machine.
const LONG_ARGS = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "4096"];
const LONG = { prompt: "Once", max_tokens: 4000, ignore_eos: true, stream: true };

/** One request on its own connection (no pooled keep-alive socket the drain may close under us). */
function request(url: string, method: string, body?: unknown): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: body === undefined ? {} : { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Starts a stream; resolves `firstFrame` at its first SSE frame and `done` with every frame once it ends (cut or not). */
function openStream(url: string, body: unknown): { firstFrame: Promise<void>; done: Promise<{ frames: string[]; error: unknown }> } {
  let onFirst!: () => void;
  const firstFrame = new Promise<void>((r) => (onFirst = r));
  const done = (async () => {
    const frames: string[] = [];
    const parser = createParser({
      onEvent: (e) => {
        frames.push(e.data);
        if (frames.length === 1) onFirst();
      },
    });
    try {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
      return { frames, error: null };
    } catch (error) {
      return { frames, error };
    } finally {
      onFirst();
    }
  })();
  return { firstFrame, done };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("graceful drain", () => {
  test("a stream in flight runs to completion while new requests get 503 and /ready says draining", async () => {
    const t = await startTestServer([...ARGS, "--drain-timeout-ms", "60000"]);
    try {
      // A pooled keep-alive connection left idle: it must not hold the drain open.
      assert.equal((await fetch(`${t.url}/v1/models`)).status, 200);
      const workerPid = t.srv.engine.pid!;
      const stream = openStream(`${t.url}/v1/chat/completions`, {
        model: t.modelId,
        messages: [{ role: "user", content: "Tell a story" }],
        max_tokens: 300,
        ignore_eos: true,
        stream: true,
      });
      await stream.firstFrame;
      const closing = t.srv.close();
      let closed = false;
      void closing.then(() => (closed = true));

      const refused = await request(`${t.url}/v1/chat/completions`, "POST", { model: t.modelId, messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers["retry-after"], "1");
      assert.equal(refused.headers.connection, "close");
      assert.match(String(refused.headers["x-request-id"]), /^req_/);
      const err = (JSON.parse(refused.body) as { error: { code: string; type: string; message: string } }).error;
      assert.equal(err.code, "engine_unavailable");
      assert.equal(err.type, "server_error");
      assert.match(err.message, /llamux is shutting down/);
      const ready = await request(`${t.url}/ready`, "GET");
      assert.equal(ready.status, 503);
      assert.deepEqual(JSON.parse(ready.body), { status: "draining", models: { [t.modelId]: "ready" } });
      assert.equal(closed, false, "close() waits for the stream");

      const { frames, error } = await stream.done;
      assert.equal(error, null);
      assert.equal(frames.at(-1), "[DONE]");
      const finish = frames
        .slice(0, -1)
        .map((f) => JSON.parse(f) as { choices: Array<{ finish_reason: string | null }> })
        .find((c) => c.choices[0]?.finish_reason);
      assert.equal(finish?.choices[0]?.finish_reason, "length");
      const contentFrames = frames.filter((f) => f.includes('"content"')).length;
      assert.ok(contentFrames > 1, "the stream went on after close() was called");

      const streamEndedAt = Date.now();
      await closing;
      assert.ok(Date.now() - streamEndedAt < 5000, "close() returns once the stream is done, not at the drain deadline");
      assert.equal(alive(workerPid), false, "the worker is gone");
      await assert.rejects(fetch(`${t.url}/health`), "the listener is closed");
    } finally {
      await t.close();
    }
  });

  test("past --drain-timeout-ms a long stream is cut and close() returns soon after", async () => {
    const t = await startTestServer([...LONG_ARGS, "--drain-timeout-ms", "300"]);
    try {
      const workerPid = t.srv.engine.pid!;
      const stream = openStream(`${t.url}/v1/completions`, { model: t.modelId, ...LONG });
      await stream.firstFrame;
      const startedAt = Date.now();
      await t.srv.close();
      const tookMs = Date.now() - startedAt;
      assert.ok(tookMs >= 250, `close() waited for the deadline (${tookMs} ms)`);
      assert.ok(tookMs < 6000, `close() returned soon after the deadline (${tookMs} ms)`);
      const { frames } = await stream.done;
      assert.notEqual(frames.at(-1), "[DONE]", "the stream was cut");
      await waitFor(() => !alive(workerPid), 2000, "the worker to be gone");
    } finally {
      await t.close();
    }
  });

  test("with --drain-timeout-ms 0 close() cuts at once", async () => {
    const t = await startTestServer([...LONG_ARGS, "--drain-timeout-ms", "0"]);
    try {
      const stream = openStream(`${t.url}/v1/completions`, { model: t.modelId, ...LONG });
      await stream.firstFrame;
      const startedAt = Date.now();
      await t.srv.close();
      assert.ok(Date.now() - startedAt < 5000);
      const { frames } = await stream.done;
      assert.notEqual(frames.at(-1), "[DONE]");
    } finally {
      await t.close();
    }
  });
});
