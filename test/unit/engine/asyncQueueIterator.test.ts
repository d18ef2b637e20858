// AsyncQueue (engine/asyncQueue.ts): a single-consumer push queue as an async iterator.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { AsyncQueue } from "../../../engine/asyncQueue.js";

/** Resolves to "pending" if `p` has not settled after a few event-loop turns. */
async function settledOrPending<T>(p: Promise<T>): Promise<T | "pending"> {
  return Promise.race([
    p,
    tick()
      .then(() => tick())
      .then(() => "pending" as const),
  ]);
}

describe("AsyncQueue", () => {
  test("an item pushed before next() is delivered at once", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    assert.deepEqual(await q.next(), { value: 1, done: false });
  });

  test("next() before push() waits, then resolves with the pushed item", async () => {
    const q = new AsyncQueue<string>();
    const p = q.next();
    assert.equal(await settledOrPending(p), "pending");
    q.push("x");
    assert.deepEqual(await p, { value: "x", done: false });
  });

  test("buffered items come out in push order", async () => {
    const q = new AsyncQueue<number>();
    for (const n of [1, 2, 3, 4]) q.push(n);
    const got = [await q.next(), await q.next(), await q.next(), await q.next()];
    assert.deepEqual(
      got.map((r) => r.value),
      [1, 2, 3, 4],
    );
    assert.equal(await settledOrPending(q.next()), "pending", "nothing more until a push or close");
  });

  test("falsy items (0, empty string, false, null) are delivered like any other", async () => {
    const q = new AsyncQueue<number | string | boolean | null>();
    q.push(0);
    q.push("");
    q.push(false);
    q.push(null);
    q.close();
    const seen: Array<number | string | boolean | null> = [];
    for await (const x of q) seen.push(x);
    assert.deepEqual(seen, [0, "", false, null]);
  });

  test("close() drains the buffered items, then ends; next() stays done afterwards", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.close();
    assert.deepEqual(await q.next(), { value: 1, done: false });
    assert.deepEqual(await q.next(), { value: 2, done: false });
    assert.deepEqual(await q.next(), { value: undefined, done: true });
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  test("close() wakes a consumer that is waiting", async () => {
    const q = new AsyncQueue<number>();
    const p = q.next();
    q.close();
    assert.deepEqual(await p, { value: undefined, done: true });
  });

  test("pushes after close() are ignored", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.close();
    q.push(2);
    const seen: number[] = [];
    for await (const x of q) seen.push(x);
    assert.deepEqual(seen, [1]);
  });

  test("closing twice is harmless", async () => {
    const q = new AsyncQueue<number>();
    q.push(7);
    q.close();
    q.close();
    assert.deepEqual(await q.next(), { value: 7, done: false });
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  test("for await consumes items pushed asynchronously by a producer until close", async () => {
    const q = new AsyncQueue<number>();
    const producer = (async () => {
      for (let i = 0; i < 5; i++) {
        await tick();
        q.push(i);
      }
      await tick();
      q.close();
    })();
    const seen: number[] = [];
    for await (const x of q) seen.push(x);
    await producer;
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  });

  test("return() ends iteration and discards buffered items", async () => {
    const q = new AsyncQueue<string>();
    q.push("a");
    q.push("b");
    assert.deepEqual(await q.return(), { value: undefined, done: true });
    assert.deepEqual(await q.next(), { value: undefined, done: true });
    q.push("c");
    assert.deepEqual(await q.next(), { value: undefined, done: true }, "a returned queue accepts nothing more");
  });

  test("breaking out of for await calls return(): the rest is discarded and later pushes ignored", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.push(3);
    const seen: number[] = [];
    for await (const x of q) {
      seen.push(x);
      if (x === 1) break;
    }
    assert.deepEqual(seen, [1]);
    q.push(4);
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  test("it is its own async iterator", () => {
    const q = new AsyncQueue<number>();
    assert.equal(q[Symbol.asyncIterator](), q);
  });
});
