// The server-wide waiting bound (src/quota/serverQueue.ts): who gets a place,
// and that every ticket gives its place back exactly once.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { queueHasRoom, ServerQueue } from "../../../src/quota/serverQueue.js";

describe("queueHasRoom", () => {
  test("free slots count as room on top of maxQueued", () => {
    assert.equal(queueHasRoom({ waiting: 0, running: 0 }, 2, 0), true);
    assert.equal(queueHasRoom({ waiting: 1, running: 0 }, 2, 0), true);
    assert.equal(queueHasRoom({ waiting: 2, running: 0 }, 2, 0), false);
    assert.equal(queueHasRoom({ waiting: 1, running: 1 }, 2, 0), false);
  });

  test("maxQueued 0 refuses as soon as no slot is free", () => {
    assert.equal(queueHasRoom({ waiting: 0, running: 4 }, 4, 0), false);
    assert.equal(queueHasRoom({ waiting: 0, running: 3 }, 4, 0), true);
  });

  test("with every slot busy, exactly maxQueued may wait", () => {
    assert.equal(queueHasRoom({ waiting: 2, running: 4 }, 4, 3), true);
    assert.equal(queueHasRoom({ waiting: 3, running: 4 }, 4, 3), false);
  });

  test("running beyond the slots (multi-prompt requests) never makes room negative", () => {
    assert.equal(queueHasRoom({ waiting: 0, running: 9 }, 4, 1), true);
    assert.equal(queueHasRoom({ waiting: 1, running: 9 }, 4, 1), false);
  });
});

describe("ServerQueue", () => {
  test("enter, start and close move the counts; a full queue throws 429 queue_full with retry-after", () => {
    const q = new ServerQueue({ slots: 1, maxQueued: 1 });
    const a = q.enter();
    const b = q.enter();
    assert.deepEqual([q.waiting, q.running], [2, 0]);
    assert.throws(
      () => q.enter(),
      (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.status, 429);
        assert.equal(err.code, "queue_full");
        assert.equal(err.retryAfterSeconds, 1);
        assert.equal(err.headers["retry-after-ms"], "1000");
        assert.match(err.message, /at capacity: 2 requests are waiting for 1 slots/);
        return true;
      },
    );
    a.started();
    assert.deepEqual([q.waiting, q.running], [1, 1]);
    assert.equal(q.hasRoom(), false, "b fills the one waiting place while a runs");
    b.close();
    assert.equal(q.hasRoom(), true, "b's place is free again");
    const c = q.enter();
    assert.equal(q.hasRoom(), false);
    a.close();
    c.close();
    assert.deepEqual([q.waiting, q.running], [0, 0]);
  });

  test("tickets are idempotent: a second start or close changes nothing", () => {
    const q = new ServerQueue({ slots: 2, maxQueued: 0 });
    const t = q.enter();
    t.started();
    t.started();
    assert.deepEqual([q.waiting, q.running], [0, 1]);
    t.close();
    t.close();
    t.started();
    assert.deepEqual([q.waiting, q.running], [0, 0]);
    const never = q.enter();
    never.close();
    never.close();
    assert.deepEqual([q.waiting, q.running], [0, 0]);
  });

  test("rejects nonsense sizes", () => {
    assert.throws(() => new ServerQueue({ slots: 0, maxQueued: 1 }), RangeError);
    assert.throws(() => new ServerQueue({ slots: 1, maxQueued: -1 }), RangeError);
    assert.throws(() => new ServerQueue({ slots: 1, maxQueued: 1.5 }), RangeError);
  });
});
