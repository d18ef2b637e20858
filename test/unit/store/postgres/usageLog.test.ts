// PgUsageLog (src/store/postgres/usageLog.ts) against a real PostgreSQL: a
// record written twice counts once; while the database is down records wait in
// memory (past the bound, folded per minute), reads include them, and once it
// returns they are written: no token lost, none counted twice.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { MIGRATIONS, migrate } from "../../../../src/store/postgres/migrations.js";
import { PgUsageLog, type UsageLogEvent } from "../../../../src/store/postgres/usageLog.js";
import { newUsageRecordId, planScan, type UsageRecord, type UsageRow, type UsageScan } from "../../../../src/usage/usageLog.js";
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
const total = (rows: UsageRow[]) =>
  rows.reduce((s, r) => ({ requests: s.requests + r.requests, input: s.input + r.inputTokens, output: s.output + r.outputTokens }), {
    requests: 0,
    input: 0,
    output: 0,
  });

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
    await db.execute("TRUNCATE usage_records, usage_rollups");
    const log = new PgUsageLog(db);
    const r = record();
    await log.record(r);
    await log.record(r);
    await log.record(record({ atSeconds: 6100, tenantId: "beta", kind: "embeddings", outputTokens: 0 }));
    assert.deepEqual(total(await log.scan(ALL)), { requests: 2, input: 20, output: 3 });
    const perTenant = await log.scan({ fromSeconds: 6000, toSeconds: 6200, widthSeconds: 60, kind: "completions", tenantId: "acme" });
    assert.deepEqual(
      perTenant.map((x) => [x.bucket, x.tenantId, x.requests, x.price]),
      [[0, "acme", 1, { input: 1, cachedInput: 0.5, output: 2 }]],
    );
    const beta = await log.scan({ fromSeconds: 6000, toSeconds: 6200, widthSeconds: 60, kind: null, tenantId: "beta" });
    assert.deepEqual(
      beta.map((x) => [x.bucket, x.kind]),
      [[1, "embeddings"]],
    );
    await log.close();
  });

  test("PgUsageLog: while the database is down records wait (folded past the bound), and are written once, when it returns", async () => {
    await db.execute("TRUNCATE usage_records, usage_rollups");
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
      // The flushed records (one statement) reached their hour's rollup once: read from the rollups alone.
      const hour = { fromSeconds: 3600, toSeconds: 7200, widthSeconds: 3600, kind: null, tenantId: null };
      assert.deepEqual(planScan(hour).records, []);
      assert.deepEqual(total(await log.scan(hour)), { requests: 22, input: expectedInput, output: 66 });
    } finally {
      await log.close();
      await own.close();
    }
  });

  test("PgUsageLog: hourly rollups give the records' sums exactly: a record written again, even at once on two connections, counts once; ranges on and off the hour", async () => {
    await db.execute("TRUNCATE usage_records, usage_rollups");
    const log = new PgUsageLog(db);
    const T0 = 1_733_011_200; // a UTC midnight
    const records: UsageRecord[] = [];
    for (let i = 0; i < 300; i++) {
      records.push(
        record({
          atSeconds: T0 + ((i * 7919) % (3 * 86_400)),
          tenantId: i % 3 ? "acme" : "beta",
          apiKeyId: i % 4 ? "key_1" : null,
          batchId: i % 5 ? null : "batch_1",
          kind: i % 6 ? "completions" : "embeddings",
          inputTokens: i,
          cachedTokens: i % 9,
          outputTokens: 2 * i,
          price: i % 7 ? { input: 1, cachedInput: 0.5, output: 2 } : null,
        }),
      );
    }
    for (const r of records) await log.record(r);
    // Written again (a retry after an ambiguous failure), some at once on several connections: ignored.
    for (const r of records.slice(0, 50)) await log.record(r);
    await Promise.all(records.slice(50, 100).flatMap((r) => [log.record(r), log.record(r)]));
    const [before] = await db.query<{ n: string }>("SELECT SUM(requests)::text AS n FROM usage_rollups");
    assert.equal(before!.n, "300");
    const sum = (rows: UsageRow[]) => {
      const m = new Map<string, number[]>();
      for (const r of rows) {
        const k = JSON.stringify([r.bucket, r.kind, r.tenantId, r.apiKeyId, r.model, r.batchId, r.price]);
        const v = m.get(k) ?? [0, 0, 0, 0];
        m.set(k, [v[0]! + r.requests, v[1]! + r.inputTokens, v[2]! + r.cachedTokens, v[3]! + r.outputTokens]);
      }
      return [...m].sort();
    };
    const raw = (q: UsageScan): UsageRow[] =>
      records
        .filter(
          (r) =>
            r.atSeconds >= q.fromSeconds &&
            r.atSeconds < q.toSeconds &&
            (q.kind === null || r.kind === q.kind) &&
            (q.tenantId === null || r.tenantId === q.tenantId),
        )
        .map(({ id: _, atSeconds, ...rest }) => ({ ...rest, bucket: Math.floor((atSeconds - q.fromSeconds) / q.widthSeconds) }));
    const scans: UsageScan[] = [
      { fromSeconds: T0, toSeconds: T0 + 3 * 86_400, widthSeconds: 86_400, kind: null, tenantId: null },
      { fromSeconds: T0, toSeconds: T0 + 3 * 86_400, widthSeconds: 3600, kind: "completions", tenantId: "acme" },
      { fromSeconds: T0 + 1234, toSeconds: T0 + 2 * 86_400 + 999, widthSeconds: 86_400, kind: null, tenantId: null },
      { fromSeconds: T0 + 1234, toSeconds: T0 + 86_400, widthSeconds: 3600, kind: "embeddings", tenantId: null },
    ];
    assert.deepEqual(planScan(scans[0]!).records, [], "aligned days come from the rollups alone");
    for (const q of scans) assert.deepEqual(sum(await log.scan(q)), sum(raw(q)), JSON.stringify(q));
    await log.close();
  });

  test("migration 6 fills the rollups from the records a version-5 database already holds", async () => {
    const own = new PgDatabase({ url: await server.createDatabase(), poolSize: 2 });
    try {
      await migrate(
        own,
        MIGRATIONS.filter((m) => m.version <= 5),
      );
      await own.execute(`INSERT INTO usage_records VALUES ('a', 7300, 'completions', 'acme', NULL, 'm', NULL, 1, 10, 2, 3, 1, 0.5, 2),
        ('b', 7400, 'completions', 'acme', NULL, 'm', NULL, 2, 20, 4, 6, 1, 0.5, 2), ('c', 7500, 'embeddings', 'beta', 'key_1', 'e', NULL, 1, 5, 0, 0, NULL, NULL, NULL)`);
      assert.deepEqual((await migrate(own)).applied, [6]);
      const log = new PgUsageLog(own);
      const q: UsageScan = { fromSeconds: 7200, toSeconds: 10_800, widthSeconds: 3600, kind: null, tenantId: null };
      assert.deepEqual(planScan(q).records, []);
      const rows = (await log.scan(q))
        .map((r) => [r.kind, r.tenantId, r.apiKeyId, r.batchId, r.requests, r.inputTokens, r.cachedTokens, r.outputTokens, r.price])
        .sort();
      assert.deepEqual(rows, [
        ["completions", "acme", null, null, 3, 30, 6, 9, { input: 1, cachedInput: 0.5, output: 2 }],
        ["embeddings", "beta", "key_1", null, 1, 5, 0, 0, null],
      ]);
      await log.close();
    } finally {
      await own.close();
    }
  });
});
