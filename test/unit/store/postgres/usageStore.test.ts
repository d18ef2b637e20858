// PgUsageStore (src/store/postgres/usageStore.ts) against a real PostgreSQL:
// the usage store contract (test/unit/quota/usageStore.test.ts), replicas
// adding to the same rows at once, and usage kept in memory while the database
// is down, then written when it returns: none lost.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { PgUsageStore, withPending, type UsageBufferEvent } from "../../../../src/store/postgres/usageStore.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { describeUsageStoreContract } from "../../quota/usageStoreContract.js";

describe("PostgreSQL usage store", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let url: string;
  let db: PgDatabase;
  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
    db = new PgDatabase({ url, poolSize: 4 });
    await migrate(db);
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });

  describeUsageStoreContract("PgUsageStore", async () => {
    await db.execute("TRUNCATE usage");
    const store = new PgUsageStore(db);
    return { store, close: () => store.close() };
  });

  test("PgUsageStore: two replicas adding to the same tenant and day at once lose nothing; usageOf reads one tenant", async () => {
    await db.execute("TRUNCATE usage");
    const a = new PgUsageStore(db);
    const b = new PgUsageStore(db);
    await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).add("acme", "2025-01-01", 3)));
    assert.deepEqual(await b.usageOf("acme"), { day: "2025-01-01", dayTokens: 150, lifetimeTokens: 150 });
    assert.equal(await a.usageOf("nobody"), null);
  });

  test("PgUsageStore: while the database is down usage is buffered, counted, and written once it returns", async () => {
    await db.execute("TRUNCATE usage");
    // A pool of its own: the shared one must not be left holding connections the restart cut.
    const own = new PgDatabase({ url, poolSize: 2, connectTimeoutMs: 500 });
    const events: UsageBufferEvent["type"][] = [];
    const store = new PgUsageStore(own, { flushIntervalMs: 50, onEvent: (e) => events.push(e.type) });
    try {
      await store.add("acme", "2025-01-01", 10);
      await server.stop();
      const started = Date.now();
      await store.add("acme", "2025-01-01", 5); // resolves: buffered, not thrown
      await store.add("acme", "2025-01-02", 7);
      await store.add("beta", "2025-01-02", 1);
      assert.ok(Date.now() - started < 5000, "no hang while the database is away");
      assert.equal(store.pendingRows, 3);
      assert.deepEqual(events, ["buffering"]);
      await server.start();
      const deadline = Date.now() + 10_000;
      while (store.pendingRows > 0) {
        assert.ok(Date.now() < deadline, "the buffer was never flushed");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(events, ["buffering", "flushed"]);
      assert.deepEqual(await store.usageOf("acme"), { day: "2025-01-02", dayTokens: 7, lifetimeTokens: 22 });
      assert.deepEqual(await store.usageOf("beta"), { day: "2025-01-02", dayTokens: 1, lifetimeTokens: 1 });
      assert.equal(store.lostRows, 0);
    } finally {
      await store.close();
      await own.close();
    }
  });

  test("PgUsageStore: the buffer is bounded; what does not fit is counted as lost", async () => {
    const down = new PgDatabase({ url: url.replace(`:${server.port}/`, ":1/"), poolSize: 1 });
    const lost: number[] = [];
    const store = new PgUsageStore(down, { maxPendingRows: 2, flushIntervalMs: 60_000, onEvent: (e) => e.type === "lost" && lost.push(e.tokens) });
    try {
      await store.add("a", "2025-01-01", 1);
      await store.add("a", "2025-01-01", 1); // same row: fits
      await store.add("b", "2025-01-01", 2);
      await store.add("c", "2025-01-01", 3); // a third row: over the bound
      assert.equal(store.pendingRows, 2);
      assert.deepEqual([store.lostRows, store.lostTokens, lost], [1, 3, [3]]);
    } finally {
      await store.close();
      await down.close();
    }
  });
});

test("withPending adds buffered tokens to an earlier, the same, or a later day", () => {
  const u = { day: "2025-01-02", dayTokens: 5, lifetimeTokens: 50 };
  assert.deepEqual(withPending(null, "2025-01-01", 3), { day: "2025-01-01", dayTokens: 3, lifetimeTokens: 3 });
  assert.deepEqual(withPending(u, "2025-01-01", 3), { day: "2025-01-02", dayTokens: 5, lifetimeTokens: 53 });
  assert.deepEqual(withPending(u, "2025-01-02", 3), { day: "2025-01-02", dayTokens: 8, lifetimeTokens: 53 });
  assert.deepEqual(withPending(u, "2025-01-03", 3), { day: "2025-01-03", dayTokens: 3, lifetimeTokens: 53 });
});
