// AsyncQueue's byte bound (engine/asyncQueue.ts): how a request whose reader
// falls behind gets paused in the engine (issue 19 item 9). onFull once the
// queue holds highWaterBytes, onDrained once the reader took it down to half,
// each once per crossing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AsyncQueue } from "../../../engine/asyncQueue.js";

function bounded(highWaterBytes: number) {
  const calls: string[] = [];
  const q = new AsyncQueue<string>({ highWaterBytes, sizeOf: (s) => s.length, onFull: () => calls.push("full"), onDrained: () => calls.push("drained") });
  return { q, calls };
}

describe("AsyncQueue with a byte bound", () => {
  test("full at the high-water mark, drained at half of it, once per crossing", async () => {
    const { q, calls } = bounded(10);
    for (let i = 0; i < 4; i++) q.push("abc"); // 12 bytes
    assert.deepEqual(calls, ["full"]);
    assert.equal(q.bufferedBytes, 12);
    q.push("abc"); // still full: no second call
    assert.deepEqual(calls, ["full"]);
    for (let i = 0; i < 3; i++) await q.next(); // 6 left: above 5
    assert.deepEqual(calls, ["full"]);
    await q.next(); // 3 left
    assert.deepEqual(calls, ["full", "drained"]);
    await q.next();
    for (let i = 0; i < 4; i++) q.push("abc");
    assert.deepEqual(calls, ["full", "drained", "full"]);
  });

  test("an item handed straight to a waiting reader is never counted", async () => {
    const { q, calls } = bounded(2);
    const waiting = q.next();
    q.push("a long item");
    assert.equal((await waiting).value, "a long item");
    assert.equal(q.bufferedBytes, 0);
    assert.deepEqual(calls, []);
  });

  test("no drained call once closed (the request is over: nothing to resume); return() forgets what was held", async () => {
    const { q, calls } = bounded(4);
    q.push("abcd");
    q.close();
    assert.equal((await q.next()).value, "abcd");
    assert.deepEqual(calls, ["full"]);
    const { q: q2 } = bounded(4);
    q2.push("abcdef");
    await q2.return();
    assert.equal(q2.bufferedBytes, 0);
  });
});
