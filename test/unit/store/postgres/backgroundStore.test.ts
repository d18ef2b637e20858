// PgBackgroundStore (src/store/postgres/backgroundStore.ts) against a real
// PostgreSQL: the BackgroundStore contract (backgroundStoreContract.ts), and
// what is PostgreSQL's own: each response's owner and the replicas' leases (a
// sweep fails only the responses of a replica whose lease expired, never a live
// one's; several sweeping at once fail each once; failOwned only its own), a cancel asked through
// another replica, and writes racing a delete of the response without deadlock.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { InterruptedOutcome } from "../../../../src/store/backgroundStore.js";
import { PgBackgroundStore } from "../../../../src/store/postgres/backgroundStore.js";
import { PgConversationStore } from "../../../../src/store/postgres/conversationStore.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { body, createQueuedIn, describeBackgroundStoreContract, event, type BackgroundStores } from "../backgroundStoreContract.js";

const TABLES =
  "responses, response_input_items, response_output_items, conversations, conversation_items, background_responses, response_events, replica_leases";
/** Long enough that a lease never expires by itself during a test: expiry is made explicit. */
const LONG_LEASE = { leaseMs: 600_000, renewMs: 300_000 };

const failed: InterruptedOutcome = ({ body: b, nextSequenceNumber }) => {
  const f = { ...b, status: "failed" };
  return {
    body: f,
    event: { sequenceNumber: nextSequenceNumber, type: "response.failed", data: { type: "response.failed", response: f, sequence_number: nextSequenceNumber } },
  };
};

describe("PostgreSQL background store", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let db: PgDatabase;
  before(async () => {
    server = await startPostgres();
    db = new PgDatabase({ url: await server.createDatabase(), poolSize: 8 });
    await migrate(db);
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });

  /** The lease of `store`'s replica ran out (as when it stopped renewing it: kill -9, a partition). */
  const expire = (store: PgBackgroundStore) =>
    db.execute("UPDATE replica_leases SET expires_at = now() - interval '1 second' WHERE replica_id = $1", [store.replicaId]);
  const close = async (s: BackgroundStores) => {
    await s.store.close();
    await s.conversations.close();
  };

  describeBackgroundStoreContract("PgBackgroundStore", {
    reset: async () => void (await db.execute(`TRUNCATE ${TABLES}`)),
    open: async (options) => ({ conversations: new PgConversationStore(db, options), store: await PgBackgroundStore.open(db, LONG_LEASE) }),
    die: async (s) => {
      // Its lease is not released: it runs out.
      await expire(s.store as PgBackgroundStore);
      await s.conversations.close();
    },
    close,
    count: async (table) => Number((await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n),
  });

  describe("PgBackgroundStore: owners and leases", () => {
    const conversations = () => new PgConversationStore(db, { responseTtlSeconds: 0 });

    test("a sweep fails only the responses of a replica whose lease expired, never a live one's", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const a = await PgBackgroundStore.open(db, LONG_LEASE);
      const b = await PgBackgroundStore.open(db, LONG_LEASE);
      try {
        assert.notEqual(a.replicaId, b.replicaId);
        await createQueuedIn(a, "t1", "resp_a");
        await createQueuedIn(b, "t1", "resp_b");
        assert.equal(await b.failUnfinished(failed), 0, "both owners are alive");
        assert.equal(await a.failUnfinished(failed), 0);
        assert.deepEqual(await a.ownerAlive("t1", "resp_a"), true);
        assert.deepEqual(
          (await a.owned()).map((o) => o.id),
          ["resp_a"],
        );
        await expire(a);
        assert.equal(await b.ownerAlive("t1", "resp_a"), false);
        assert.equal(await b.failUnfinished(failed), 1);
        assert.equal(await b.status("t1", "resp_a"), "failed");
        assert.equal(await b.status("t1", "resp_b"), "queued");
        // The dead owner's late write finds it terminal: it stops, nothing is written.
        assert.equal(await a.update("t1", "resp_a", { events: [event(2)] }), false);
        assert.equal(
          await a.finish({
            tenantId: "t1",
            id: "resp_a",
            status: "completed",
            body: body("resp_a", "completed"),
            events: [],
            outputItems: [],
            conversation: null,
          }),
          false,
        );
        assert.deepEqual(
          (await b.events("t1", "resp_a", -1)).map((e) => e.type),
          ["response.created", "response.queued", "response.failed"],
        );
        // Its lease, expired and owning nothing unfinished, is cleared away.
        assert.deepEqual(
          (await db.query("SELECT replica_id FROM replica_leases ORDER BY replica_id")).map((r) => r.replica_id),
          [b.replicaId],
        );
      } finally {
        await a.close();
        await b.close();
      }
    });

    test("the lease is renewed while the replica lives and released when it closes", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const a = await PgBackgroundStore.open(db, { leaseMs: 600, renewMs: 100 });
      const b = await PgBackgroundStore.open(db, LONG_LEASE);
      try {
        await createQueuedIn(a, "t1", "resp_a");
        // Several lease lengths later it is still alive.
        await new Promise((r) => setTimeout(r, 1800));
        assert.equal(await b.failUnfinished(failed), 0);
        assert.equal(await b.ownerAlive("t1", "resp_a"), true);
        await a.close();
        // Released: failed at the next sweep, without waiting for the expiry.
        assert.equal(await b.ownerAlive("t1", "resp_a"), false);
        assert.equal(await b.failUnfinished(failed), 1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    test("replicas sweeping at once fail each response of a dead one once", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const dead = await PgBackgroundStore.open(db, LONG_LEASE);
      const sweepers = await Promise.all([0, 1, 2].map(() => PgBackgroundStore.open(db, LONG_LEASE)));
      try {
        for (let i = 0; i < 20; i++) await createQueuedIn(dead, "t1", `resp_${i}`);
        await expire(dead);
        const counts = await Promise.all(sweepers.map((s) => s.failUnfinished(failed)));
        assert.equal(
          counts.reduce((x, y) => x + y, 0),
          20,
        );
        const [row] = await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM response_events WHERE type = 'response.failed'");
        assert.equal(Number(row!.n), 20, "one response.failed event each");
      } finally {
        for (const s of [dead, ...sweepers]) await s.close();
      }
    });

    test("a cancel asked through another replica: the owner sees it in owned(), and finishes it itself", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const owner = await PgBackgroundStore.open(db, LONG_LEASE);
      const other = await PgBackgroundStore.open(db, LONG_LEASE);
      try {
        await createQueuedIn(owner, "t1", "resp_1");
        assert.equal(await other.requestCancel("t2", "resp_1"), false, "another tenant's id");
        assert.deepEqual(await other.owned(), []);
        assert.equal(await other.requestCancel("t1", "resp_1"), true);
        assert.deepEqual(await owner.owned(), [{ tenantId: "t1", id: "resp_1", cancelRequested: true }]);
        assert.equal(
          await owner.finish({
            tenantId: "t1",
            id: "resp_1",
            status: "cancelled",
            body: body("resp_1", "cancelled", ["partial"]),
            events: [],
            outputItems: [],
            conversation: null,
          }),
          true,
        );
        assert.deepEqual(await owner.owned(), []);
        assert.equal(await other.requestCancel("t1", "resp_1"), false, "terminal already");
      } finally {
        await owner.close();
        await other.close();
      }
    });

    test("failOwned fails only this replica's own unfinished response", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const owner = await PgBackgroundStore.open(db, LONG_LEASE);
      const other = await PgBackgroundStore.open(db, LONG_LEASE);
      try {
        await createQueuedIn(owner, "t1", "resp_1");
        await createQueuedIn(owner, "t1", "resp_done");
        await owner.finish({
          tenantId: "t1",
          id: "resp_done",
          status: "completed",
          body: body("resp_done", "completed"),
          events: [],
          outputItems: [],
          conversation: null,
        });
        assert.equal(await other.failOwned("t1", "resp_1", failed), false, "not its own");
        assert.equal(await owner.failOwned("t2", "resp_1", failed), false, "another tenant's id");
        assert.equal(await owner.failOwned("t1", "resp_done", failed), false, "finished already");
        assert.equal(await owner.failOwned("t1", "resp_1", failed), true);
        assert.equal(await owner.status("t1", "resp_1"), "failed");
        assert.equal(await owner.status("t1", "resp_done"), "completed");
        assert.equal((await owner.events("t1", "resp_1", -1)).at(-1)!.type, "response.failed");
      } finally {
        await owner.close();
        await other.close();
      }
    });

    test("writes racing deletes of their response never deadlock: each write either lands or finds it gone", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const owner = await PgBackgroundStore.open(db, LONG_LEASE);
      const other = await PgBackgroundStore.open(db, LONG_LEASE);
      const conv = conversations();
      try {
        const n = 30;
        for (let i = 0; i < n; i++) await createQueuedIn(owner, "t1", `resp_${i}`);
        const outcomes = await Promise.all(
          Array.from({ length: n }, (_, i) =>
            Promise.all([
              owner.update("t1", `resp_${i}`, { events: [event(2, "response.in_progress")], body: body(`resp_${i}`, "in_progress"), status: "in_progress" }),
              conv.deleteResponse("t1", `resp_${i}`),
              other.requestCancel("t1", `resp_${i}`),
              other.failUnfinished(failed),
            ]),
          ),
        );
        assert.equal(outcomes.length, n);
        for (const [, deleted] of outcomes) assert.equal(deleted, true);
        assert.equal(Number((await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM background_responses"))[0]!.n), 0);
        assert.equal(Number((await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM response_events"))[0]!.n), 0);
      } finally {
        await conv.close();
        await owner.close();
        await other.close();
      }
    });

    test("refuses a renewal interval that does not fit in the lease", async () => {
      await assert.rejects(PgBackgroundStore.open(db, { leaseMs: 1000, renewMs: 1000 }), /renewMs/);
    });
  });
});
