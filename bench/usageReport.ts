// What a usage report costs on SQLite (the embedded default), read from the
// hourly rollups (today) against the same query over every record (before the
// rollups), on the same database in the same run. better-sqlite3 is
// synchronous, so a report's read blocks the event loop, every tenant's
// streams included, for as long as it takes: the "block" column is the
// longest event-loop delay seen during the report (perf_hooks).
//
//   npm run build && node dist/bench/usageReport.js [--records 200000] [--tenants 20] [--repeats 5]
//
// Records are spread evenly over 30 days from a UTC midnight: 20 tenants with
// 2 keys each, 3 priced models, one record in ten a batch line. The database
// is filled in one transaction, its rollups by the backfill SqliteUsageLog
// runs at open (timed too). Also timed: one record() (a transaction of insert
// + rollup) against the record's insert alone, each committed (synchronous=FULL).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { pageRange, parseReportQuery, reportPage, type ReportKind } from "../src/usage/report.js";
import { recordValues, scanParams, scanSql, SqliteUsageLog, usageRow, type RawUsageRow, type UsageRecord, type UsageScan } from "../src/usage/usageLog.js";
import { summarize } from "./stats.js";

const { values } = parseArgs({
  options: { records: { type: "string", default: "200000" }, tenants: { type: "string", default: "20" }, repeats: { type: "string", default: "5" } },
});
const N = Number(values.records);
const TENANTS = Number(values.tenants);
const REPEATS = Number(values.repeats);
const DAY = 86_400;
const T0 = 1_733_011_200; // 2024-12-01T00:00:00Z
const MODELS = [
  { id: "small", price: { input: 0.15, cachedInput: 0.075, output: 0.6 } },
  { id: "large", price: { input: 2.5, cachedInput: 1.25, output: 10 } },
  { id: "embed", price: { input: 0.02, cachedInput: 0.02, output: 0 } },
];

function recordAt(i: number): UsageRecord {
  const tenant = i % TENANTS;
  const model = MODELS[i % MODELS.length]!;
  const batch = i % 10 === 0;
  return {
    id: `rec_${i}`,
    atSeconds: T0 + Math.floor((i * 30 * DAY) / N),
    kind: model.id === "embed" ? "embeddings" : "completions",
    tenantId: `tenant_${tenant}`,
    apiKeyId: batch ? null : `key_${tenant}_${i % 2}`,
    model: model.id,
    batchId: batch ? `batch_${tenant}_${Math.floor(i / 5000)}` : null,
    requests: 1,
    inputTokens: 100 + (i % 900),
    cachedTokens: i % 3 === 0 ? 64 : 0,
    outputTokens: model.id === "embed" ? 0 : 50 + (i % 400),
    price: model.price,
  };
}

/** Equal, numbers within 1e-9 relative, results in any order. */
function close(a: unknown, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number") return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a));
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    const key = (x: unknown) => JSON.stringify(x, (k, v) => (k === "value" ? 0 : v));
    const [sa, sb] = [[...a].sort((x, y) => key(x).localeCompare(key(y))), [...b].sort((x, y) => key(x).localeCompare(key(y)))];
    return sa.every((x, i) => close(x, sb[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a).sort();
    return (
      JSON.stringify(ka) === JSON.stringify(Object.keys(b).sort()) &&
      ka.every((k) => close((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
    );
  }
  return a === b;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bench-usage-"));
try {
  // Schema, then the records in one transaction, then the rollups dropped: the next open backfills them.
  await SqliteUsageLog.open(dir).close();
  const file = path.join(dir, "llamux.db");
  const fill = new Database(file);
  const insert = fill.prepare("INSERT INTO usage_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  fill.transaction(() => {
    for (let i = 0; i < N; i++) insert.run(...recordValues(recordAt(i)));
  })();
  fill.exec("DROP TABLE usage_rollups");
  fill.close();

  let t = performance.now();
  const log = SqliteUsageLog.open(dir);
  const backfillMs = performance.now() - t;
  // "Before": the one GROUP BY over the records the reports ran until the rollups.
  const raw = new Database(file, { readonly: true });
  const rawScan = raw.prepare(scanSql("sqlite"));
  const scanRecords = async (q: UsageScan) => (rawScan.all(scanParams(q, { lo: q.fromSeconds, hi: q.toSeconds })) as RawUsageRow[]).map(usageRow);
  const { rollups } = raw.prepare("SELECT COUNT(*) AS rollups FROM usage_rollups").get() as { rollups: number };

  /** Median ms of the whole report (scan + page) and the longest event-loop delay seen while it ran. */
  async function measure(scan: (q: UsageScan) => Promise<ReturnType<typeof usageRow>[]>, kind: ReportKind, query: string, tenant: string | null) {
    const ms: number[] = [];
    const blocks: number[] = [];
    let body = "";
    for (let r = 0; r < REPEATS; r++) {
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      await new Promise((res) => setTimeout(res, 5));
      const start = performance.now();
      const q = parseReportQuery(kind, new URLSearchParams(query), T0 + 31 * DAY);
      const page = reportPage(q, await scan({ ...pageRange(q), kind: kind === "costs" ? null : kind, tenantId: tenant }));
      ms.push(performance.now() - start);
      await new Promise((res) => setTimeout(res, 5));
      h.disable();
      blocks.push(h.max / 1e6);
      body = JSON.stringify(page);
    }
    return { ms: summarize(ms).p50, block: Math.max(...blocks), body };
  }

  const cases: Array<[string, ReportKind, string, string | null]> = [
    [
      "month, 1d buckets, all tenants (admin)",
      "completions",
      `start_time=${T0}&end_time=${T0 + 31 * DAY}&bucket_width=1d&limit=31&group_by=project_id,model`,
      null,
    ],
    ["month, 1d buckets, one tenant (/v1)", "completions", `start_time=${T0}&end_time=${T0 + 31 * DAY}&bucket_width=1d&limit=31&group_by=model`, "tenant_3"],
    [
      "month costs, 1d buckets, all tenants",
      "costs",
      `start_time=${T0}&end_time=${T0 + 31 * DAY}&bucket_width=1d&limit=31&group_by=project_id,line_item`,
      null,
    ],
    [
      "month, 1d buckets, start off the hour, all tenants",
      "completions",
      `start_time=${T0 + 1234}&end_time=${T0 + 31 * DAY + 1234}&bucket_width=1d&limit=31&group_by=project_id,model`,
      null,
    ],
    ["week, 1h buckets, all tenants", "completions", `start_time=${T0}&end_time=${T0 + 7 * DAY}&bucket_width=1h&limit=168&group_by=project_id,model`, null],
    [
      "week, 1h buckets, start off the hour, all tenants",
      "completions",
      `start_time=${T0 + 1234}&end_time=${T0 + 7 * DAY + 1234}&bucket_width=1h&limit=168&group_by=project_id,model`,
      null,
    ],
    [
      "day, 1m buckets (records either way), all tenants",
      "completions",
      `start_time=${T0}&end_time=${T0 + DAY}&bucket_width=1m&limit=1440&group_by=project_id,model`,
      null,
    ],
  ];
  console.log(`${N} records over 30 days, ${TENANTS} tenants; ${rollups} rollup rows; backfill at open ${backfillMs.toFixed(0)} ms; median of ${REPEATS}`);
  console.log("| report | records: ms | records: block ms | rollups: ms | rollups: block ms | same page |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const [name, kind, query, tenant] of cases) {
    const before = await measure(scanRecords, kind, query, tenant);
    const after = await measure((q) => log.scan(q), kind, query, tenant);
    // Same page: exact for usage; costs summed in another order may differ in the last bits.
    const same = before.body === after.body ? "yes" : close(JSON.parse(before.body), JSON.parse(after.body)) ? "yes (amounts to 1e-9)" : "NO";
    console.log(`| ${name} | ${before.ms.toFixed(1)} | ${before.block.toFixed(0)} | ${after.ms.toFixed(1)} | ${after.block.toFixed(0)} | ${same} |`);
  }
  raw.close();

  // Write cost: record() (insert + rollup, one transaction) against the insert alone, each committed.
  const W = 2000;
  t = performance.now();
  for (let i = 0; i < W; i++) await log.record({ ...recordAt(i), id: `new_${i}` });
  const withRollup = (performance.now() - t) / W;
  const plain = new Database(file);
  plain.pragma("synchronous = FULL");
  const plainInsert = plain.prepare("INSERT INTO usage_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING");
  t = performance.now();
  for (let i = 0; i < W; i++) plainInsert.run(...recordValues({ ...recordAt(i), id: `plain_${i}` }));
  const insertOnly = (performance.now() - t) / W;
  plain.close();
  await log.close();
  console.log(
    `record(): ${(withRollup * 1000).toFixed(0)} µs with its rollup, ${(insertOnly * 1000).toFixed(0)} µs the insert alone (mean of ${W}, synchronous=FULL)`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
