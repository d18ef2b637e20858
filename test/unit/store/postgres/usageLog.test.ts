// PgUsageLog (src/store/postgres/usageLog.ts) against a real PostgreSQL: a
// record written twice counts once; while the database is down records wait in
// memory (past the bound, folded per minute), reads include them, and once it
// returns they are written: no token lost, none counted twice.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { PgUsageLog, type UsageLogEvent } from "../../../../src/store/postgres/usageLog.js";
import { newUsageRecordId, type UsageRecord, type UsageRow } from "../../../../src/usage/usageLog.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";

const record = (over: Partial<UsageRecord> = {}): UsageRecord => ({
  id: newUsageRecordId(),
  atSeconds: 6000,
  kind: "completions",
  tenantId: "acme",
  apiKeyId: "key_1",
  model: "m",
  batchId: null,
  requests: 1,
  inputTokens: 10,
  cachedTokens: 2,
  outputTokens: 3,
  price: { input: 1, cachedInput: 0.5, output: 2 },
  ...over,
});
const ALL = { fromSeconds: 0, toSeconds: 100_000, widthSeconds: 100_000, kind: null, tenantId: null };
const total = (rows: UsageRow[]) => rows.reduce((s, r) => ({ requests: s.requests + r.requests, input: s.input + r.inputTokens, output: s.output + r.outputTokens }), { requests: 0, input: 0, output: 0 });

describe("PostgreSQL usage log", { skip: postgresMissing ?? false }, () => {
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

  test("PgUsageLog: a record written twice counts once; scans sum per bucket, kind and tenant", async () => {
    await db.execute("TRUNCATE usage_records");
    const log = new PgUsageLog(db);
    const r = record();
    await log.record(r);
    await log.record(r);
    await log.record(record({ atSeconds: 6100, tenantId: "beta", kind: "embeddings", outputTokens: 0 }));
    assert.deepEqual(total(await log.scan(ALL)), { requests: 2, input: 20, output: 3 });
    const perTenant = await log.scan({ fromSeconds: 6000, toSeconds: 6200, widthSeconds: 60, kind: "completions", tenantId: "acme" });
    assert.deepEqual(perTenant.map((x) => [x.bucket, x.tenantId, x.requests, x.price]), [[0, "acme", 1, { input: 1, cachedInput: 0.5, output: 2 }]]);
    const beta = await log.scan({ fromSeconds: 6000, toSeconds: 6200, widthSeconds: 60, kind: null, tenantId: "beta" });
    assert.deepEqual(beta.map((x) => [x.bucket, x.kind]), [[1, "embeddings"]]);
    await log.close();
  });

  test("PgUsageLog: while the database is down records wait (folded past the bound), and are written once, when it returns", async () => {
    await db.execute("TRUNCATE usage_records");
    const own = new PgDatabase({ url, poolSize: 2, connectTimeoutMs: 500 });
    const events: UsageLogEvent["type"][] = [];
    const log = new PgUsageLog(own, { maxPendingRecords: 3, flushIntervalMs: 50, onEvent: (e) => events.push(e.type) });
    try {
      await log.record(record());
      await server.stop();
      const started = Date.now();
      for (let i = 0; i < 20; i++) await log.record(record({ atSeconds: 6000 + i, inputTokens: i })); // resolves: buffered, not thrown
      assert.ok(Date.now() - started < 10_000, "no hang while the database is away");
      // 3 one by one, the other 17 folded into one aggregate (same minute, tenant, key, model, price).
      assert.equal(log.pendingRecords, 4);
      assert.deepEqual(events, ["buffering"]);
      // A flush tried while the database is away seals what it tried: a later record starts a new aggregate.
      await log.flush();
      await log.record(record({ atSeconds: 6030, inputTokens: 100 }));
      assert.equal(log.pendingRecords, 5);
      await server.start();
      const deadline = Date.now() + 15_000;
      while (log.pendingRecords > 0) {
        assert.ok(Date.now() < deadline, "the buffer was never flushed");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(events.includes("flushed"));
      const expectedInput = 10 + (19 * 20) / 2 + 100;
      assert.deepEqual(total(await log.scan(ALL)), { requests: 22, input: expectedInput, output: 66 });
    } finally {
      await log.close();
      await own.close();
    }
  });
});
