// PgConversationStore (src/store/postgres/conversationStore.ts) against a real
// PostgreSQL: the ConversationStore contract (conversationStoreContract.ts),
// and what is PostgreSQL's own: the batched purge with several replicas at
// once, and the retryable error when the database is away.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PgConversationStore } from "../../../../src/store/postgres/conversationStore.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { StoreUnavailableError } from "../../../../src/store/unavailable.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { DAY, describeConversationStoreContract } from "../conversationStoreContract.js";

/** `?` placeholders (the contract's SQLite-style SQL) as $1, $2… */
export const numbered = (sql: string) => {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
};
const TABLES = "responses, response_input_items, response_output_items, conversations, conversation_items CASCADE";

describe("PostgreSQL conversation store", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let db: PgDatabase;
  let url: string;
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

  describeConversationStoreContract("PgConversationStore", {
    reset: async () => void (await db.execute(`TRUNCATE ${TABLES}`)),
    open: async (options) => new PgConversationStore(db, options),
    count: async (sql, ...params) => Number((await db.query<{ n: unknown }>(numbered(sql).replace(/COUNT\(\*\)/i, "COUNT(*) AS n"), params))[0]!.n),
  });

  describe("PgConversationStore: what is PostgreSQL's own", () => {
    test("replicas purging at once delete each expired response once, in batches", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const now = 1_700_000_000;
      await db.execute(
        `INSERT INTO responses (tenant_id, id, created_at, body) SELECT CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'beta' END, 'resp_' || i, $1, '{}' FROM generate_series(1, 1234) AS i`,
        [now - 31 * DAY],
      );
      await db.execute(
        `INSERT INTO response_input_items (tenant_id, response_id, position, item_id, item) SELECT tenant_id, id, 0, 'm_' || id, '{}' FROM responses`,
      );
      await db.execute(`INSERT INTO responses (tenant_id, id, created_at, body) VALUES ('acme', 'fresh', $1, '{}')`, [now]);
      const replicas = [0, 1, 2].map(() => new PgConversationStore(db, { responseTtlSeconds: 30 * DAY, nowSeconds: () => now, purgeIntervalMs: 3_600_000 }));
      try {
        // Each opened with a purge of its own in flight; wait for those, then purge again at once.
        const counts = await Promise.all(replicas.map((r) => r.purgeExpired()));
        const again = await Promise.all(replicas.map((r) => r.purgeExpired()));
        const total = [...counts, ...again].reduce((a, b) => a + b, 0);
        assert.ok(total <= 1234, `deleted ${total}`);
        assert.deepEqual(await db.query("SELECT id FROM responses"), [{ id: "fresh" }]);
        assert.equal((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM response_input_items"))[0]!.n, 0);
      } finally {
        for (const r of replicas) await r.close();
      }
    });

    test("every connection commits synchronously (acknowledged means on disk) and has a statement deadline", async () => {
      const [row] = await db.query<{ synchronous_commit: string }>("SHOW synchronous_commit");
      assert.equal(row!.synchronous_commit, "on");
      const [timeout] = await db.query<{ statement_timeout: string }>("SHOW statement_timeout");
      assert.notEqual(timeout!.statement_timeout, "0");
      const quick = new PgDatabase({ url, poolSize: 1, queryTimeoutMs: 200 });
      try {
        await assert.rejects(quick.query("SELECT pg_sleep(5)"), /statement timeout/);
      } finally {
        await quick.close();
      }
    });

    test("a database that is not there gives StoreUnavailableError quickly, not a hang", async () => {
      const down = new PgDatabase({ url: `postgres://postgres@127.0.0.1:${server.port}/postgres`.replace(`:${server.port}`, ":1"), poolSize: 1 });
      const store = new PgConversationStore(down, { responseTtlSeconds: 0 });
      try {
        const started = Date.now();
        await assert.rejects(store.getResponse("acme", "resp_1"), StoreUnavailableError);
        await assert.rejects(store.commitResponse({ tenantId: "acme", response: null, conversation: { id: "c", items: [] } }), StoreUnavailableError);
        assert.ok(Date.now() - started < 10_000);
        // Nothing to keep (store:false, no conversation): nothing asked of the database.
        await store.commitResponse({ tenantId: "acme", response: null, conversation: null });
      } finally {
        await store.close();
        await down.close();
      }
    });
  });
});
