// SseWriter (src/sse.ts): a write waits for 'drain' (backpressure), and a
// reader that reads nothing for the stall timeout has its connection closed,
// so a paused request cannot hold its KV slot for good (issue 19 item 9).
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import type { Response } from "express";
import { SseWriter } from "../../../src/sse.js";

/** A response whose socket buffer is always full: write() says to wait for 'drain'. */
function fullResponse() {
  const res = Object.assign(new EventEmitter(), {
    closed: false,
    destroyed: false,
    locals: {} as Record<string, unknown>,
    written: [] as string[],
    write: (frame: string) => {
      res.written.push(frame);
      return false;
    },
    destroy: () => {
      res.destroyed = true;
      res.closed = true;
      res.emit("close");
    },
    end: () => undefined,
  });
  return res;
}

describe("SseWriter backpressure", () => {
  test("a write waits for drain, then the next one goes out", async () => {
    const res = fullResponse();
    const sse = new SseWriter(res as unknown as Response, { stallTimeoutMs: 10_000 });
    let done = false;
    const p = sse.send({ a: 1 }).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false, "waiting for drain");
    res.emit("drain");
    await p;
    assert.equal(res.destroyed, false);
  });

  test("a reader that reads nothing for the stall timeout is disconnected, and that is recorded for the log", async () => {
    const res = fullResponse();
    const sse = new SseWriter(res as unknown as Response, { stallTimeoutMs: 50 });
    const started = performance.now();
    await sse.send({ a: 1 });
    assert.ok(performance.now() - started >= 45);
    assert.equal(res.destroyed, true);
    assert.equal(res.locals.slowReader, true);
    assert.equal(sse.isClosed, true);
    await sse.send({ b: 2 }); // writes after that are dropped at once
    assert.equal(res.written.length, 1);
  });

  test("a client that leaves while a write waits ends the wait without the timeout", async () => {
    const res = fullResponse();
    const sse = new SseWriter(res as unknown as Response, { stallTimeoutMs: 10_000 });
    const p = sse.send({ a: 1 });
    res.closed = true;
    res.emit("close");
    await p;
    assert.equal(res.locals.slowReader, undefined);
  });
});
