// Hourly rollups (src/usage/usageLog.ts): the scan plan splits a range into
// rollup hours and record ranges that cover it exactly once; and on random
// records (duplicate ids included) and random ranges, the reports made from
// SqliteUsageLog's scan (rollups + records) equal those made from the records
// themselves, folded here in plain code. A database from before the rollups
// gets them filled at open.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import fc from "fast-check";
import { pageRange, parseReportQuery, reportPage, type ReportKind } from "../../../src/usage/report.js";
import { HOUR, planScan, SqliteUsageLog, type UsageRecord, type UsageRow, type UsageScan } from "../../../src/usage/usageLog.js";

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-rollup-"));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const DAY = 86_400;
const T0 = 1_733_011_200; // a UTC midnight

/** The rows of a scan, straight from the records: the first record of each id counts. */
function rawScan(records: readonly UsageRecord[], q: UsageScan): UsageRow[] {
  const seen = new Set<string>();
  const rows: UsageRow[] = [];
  for (const r of records) {
    if (seen.has(r.id)) continue;
    seen.add(r.id);
    if (r.atSeconds < q.fromSeconds || r.atSeconds >= q.toSeconds) continue;
    if ((q.kind !== null && r.kind !== q.kind) || (q.tenantId !== null && r.tenantId !== q.tenantId)) continue;
    const { id: _, atSeconds, ...rest } = r;
    rows.push({ ...rest, bucket: Math.floor((atSeconds - q.fromSeconds) / q.widthSeconds) });
  }
  return rows;
}

/** Report results with integer fields exact and amounts rounded far below a cent's billionth (sums in another order). */
function normalized(page: ReturnType<typeof reportPage>) {
  return page.data.map((b) => ({
    ...b,
    results: b.results.map((r: any) => JSON.stringify(r.amount ? { ...r, amount: { ...r.amount, value: Number(r.amount.value.toPrecision(12)) } } : r)).sort(),
  }));
}

const recordArb = fc.record({
  idIndex: fc.nat({ max: 60 }), // few distinct ids: duplicates are common
  at: fc.integer({ min: T0 - 2 * DAY, max: T0 + 5 * DAY }),
  kind: fc.constantFrom("completions" as const, "embeddings" as const),
  tenantId: fc.constantFrom("acme", "beta"),
  apiKeyId: fc.constantFrom(null, "key_1", "key_2"),
  model: fc.constantFrom("m", "n"),
  batchId: fc.constantFrom(null, "batch_1"),
  requests: fc.integer({ min: 1, max: 3 }),
  inputTokens: fc.nat({ max: 5000 }),
  cachedFraction: fc.double({ min: 0, max: 1, noNaN: true }),
  outputTokens: fc.nat({ max: 5000 }),
  price: fc.constantFrom(null, { input: 0.15, cachedInput: 0.075, output: 0.6 }, { input: 2.5, cachedInput: 1.25, output: 10 }),
});

const queryArb = fc.record({
  start: fc.oneof(
    fc.integer({ min: T0 - 3 * DAY, max: T0 + 6 * DAY }),
    fc.integer({ min: -72, max: 144 }).map((h) => T0 + h * HOUR),
  ),
  length: fc.oneof(
    fc.integer({ min: 1, max: 9 * DAY }),
    fc.integer({ min: 1, max: 200 }).map((h) => h * HOUR),
  ),
  width: fc.constantFrom("1m", "1h", "1d"),
  limit: fc.integer({ min: 1, max: 31 }),
  tenant: fc.constantFrom(null, "acme"),
});

describe("usage rollups", () => {
  test("planScan: rollup hours and record ranges cover every second of the range once, each hour inside one bucket", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 * DAY }), fc.integer({ min: 1, max: 3 * DAY }), fc.constantFrom(60, HOUR, DAY), (from, len, width) => {
        const to = from + len;
        const plan = planScan({ fromSeconds: from, toSeconds: to, widthSeconds: width });
        // Count coverage per second, sampled at every hour edge, bucket edge and range edge ±1.
        const points = new Set<number>([from, to - 1]);
        for (let h = from - (from % HOUR); h <= to; h += HOUR) for (const d of [-1, 0, 1]) points.add(h + d);
        for (let e = from; e <= to; e += width) for (const d of [-1, 0, 1]) points.add(e + d);
        for (const t of points) {
          if (t < from || t >= to) continue;
          let n = plan.records.filter((p) => t >= p.lo && t < p.hi).length;
          if (plan.rollups) {
            const h = t - (t % HOUR);
            if (h >= plan.rollups.lo && h < plan.rollups.hi && ((h - from) % width) + HOUR <= width) {
              n++;
              assert.equal(Math.floor((h - from) / width), Math.floor((h + HOUR - 1 - from) / width), "a rollup hour lies in one bucket");
            }
          }
          assert.equal(n, 1, `second ${t} of [${from}, ${to}) width ${width}: ${JSON.stringify(plan)}`);
        }
        if (width === 60) assert.equal(plan.rollups, null);
        // Aligned hour or day buckets read no records at all.
        if (width !== 60 && from % HOUR === 0 && to % HOUR === 0) assert.deepEqual(plan.records, []);
      }),
      { numRuns: 300 },
    );
  });

  test("reports from rollups and records equal reports from the records alone, on random data with duplicate ids", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { maxLength: 150 }), fc.array(queryArb, { minLength: 1, maxLength: 4 }), async (specs, queries) => {
        const log = SqliteUsageLog.open(tempDir());
        try {
          const records: UsageRecord[] = specs.map((s) => ({
            id: `rec_${s.idIndex}`,
            atSeconds: s.at,
            kind: s.kind,
            tenantId: s.tenantId,
            apiKeyId: s.apiKeyId,
            model: s.model,
            batchId: s.batchId,
            requests: s.requests,
            inputTokens: s.inputTokens,
            cachedTokens: Math.floor(s.inputTokens * s.cachedFraction),
            outputTokens: s.outputTokens,
            price: s.price,
          }));
          for (const r of records) await log.record(r);
          for (const qs of queries) {
            for (const kind of ["completions", "embeddings", "costs"] as ReportKind[]) {
              const groups =
                kind === "costs"
                  ? "project_id,api_key_id,line_item"
                  : kind === "embeddings"
                    ? "project_id,api_key_id,model"
                    : "project_id,api_key_id,model,batch";
              const limit = kind === "costs" ? qs.limit : Math.min(qs.limit, { "1m": 1440, "1h": 168, "1d": 31 }[qs.width]!);
              const params = new URLSearchParams({
                start_time: String(qs.start),
                end_time: String(qs.start + qs.length),
                bucket_width: qs.width,
                limit: String(limit),
                group_by: groups,
              });
              const query = parseReportQuery(kind, params, T0);
              const scan: UsageScan = { ...pageRange(query), kind: kind === "costs" ? null : kind, tenantId: qs.tenant };
              const fromLog = reportPage(query, await log.scan(scan));
              const fromRecords = reportPage(query, rawScan(records, scan));
              assert.deepEqual(normalized(fromLog), normalized(fromRecords), `${kind} ${params}`);
            }
          }
        } finally {
          await log.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  test("a database from before the rollups gets them filled from its records at open", async () => {
    const dir = tempDir();
    const records: UsageRecord[] = [];
    for (let i = 0; i < 40; i++) {
      records.push({
        id: `old_${i}`,
        atSeconds: T0 + i * 1234,
        kind: i % 3 ? "completions" : "embeddings",
        tenantId: i % 2 ? "acme" : "beta",
        apiKeyId: i % 4 ? "key_1" : null,
        model: "m",
        batchId: i % 5 ? null : "batch_1",
        requests: 1,
        inputTokens: 10 + i,
        cachedTokens: i % 7,
        outputTokens: i,
        price: i % 6 ? { input: 1, cachedInput: 0.5, output: 2 } : null,
      });
    }
    // First open creates today's schema; then the rollups are dropped and the records written past them, as an older llamux would have.
    await SqliteUsageLog.open(dir).close();
    const db = new Database(path.join(dir, "llamux.db"));
    db.exec("DROP TABLE usage_rollups");
    const insert = db.prepare("INSERT INTO usage_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const r of records)
      insert.run(
        r.id,
        r.atSeconds,
        r.kind,
        r.tenantId,
        r.apiKeyId,
        r.model,
        r.batchId,
        r.requests,
        r.inputTokens,
        r.cachedTokens,
        r.outputTokens,
        r.price?.input ?? null,
        r.price?.cachedInput ?? null,
        r.price?.output ?? null,
      );
    db.close();
    const log = SqliteUsageLog.open(dir);
    try {
      const query = parseReportQuery(
        "completions",
        new URLSearchParams({ start_time: String(T0), end_time: String(T0 + DAY), group_by: "project_id,api_key_id,model,batch" }),
        T0,
      );
      const scan: UsageScan = { fromSeconds: T0, toSeconds: T0 + DAY, widthSeconds: DAY, kind: "completions", tenantId: null };
      assert.deepEqual(planScan(scan).records, [], "the day is read from the rollups alone");
      assert.deepEqual(normalized(reportPage(query, await log.scan(scan))), normalized(reportPage(query, rawScan(records, scan))));
      assert.ok(reportPage(query, await log.scan(scan)).data[0]!.results.length > 0);
    } finally {
      await log.close();
    }
  });
});
