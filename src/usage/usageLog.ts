// The usage log: one record per request that returned a `usage` object (chat,
// completions, responses, embeddings, streamed or not, each line of a batch),
// kept for the usage and cost reports (src/usage/report.ts). Separate from the
// quota's per-day totals (src/quota/usageStore.ts), which only answer "how
// much is left today".
//
// Why one record per request rather than per-minute aggregates: a record has
// its own id, so a write retried after an ambiguous failure (a networked
// store that committed but timed out) is ignored the second time, and the
// reports stay exact instead of at-least-once. The cost is one row per request
// (about 150 bytes), written in the same step the quota already writes its
// own, plus its share of an hourly rollup (below) that reports in whole hours
// read instead of the records.
//
// A record carries the model's prices at the time it was written, so a price
// changed later reprices nothing already used.
import crypto from "node:crypto";
import type { Database as Db, Statement } from "better-sqlite3";
import { Worker } from "node:worker_threads";
import { openDatabase } from "../store/sqlite.js";
import type { ScanJob, ScanReply } from "./sqliteScanWorker.js";

export type UsageKind = "completions" | "embeddings";

/** USD per million tokens. */
export interface ModelPrice {
  input: number;
  /** Prompt tokens read from the KV cache. */
  cachedInput: number;
  output: number;
}

export interface UsageRecord {
  /** Unique per request: a second write of the same record is ignored. */
  id: string;
  /** Unix seconds, when the usage was known. */
  atSeconds: number;
  kind: UsageKind;
  tenantId: string;
  /** The key the request was made with; null: no key (single-tenant mode, a batch line). */
  apiKeyId: string | null;
  /** The served model's id (never an alias, so one model is one line of a report). */
  model: string;
  /** The Batch API batch the request was a line of; null: an interactive request. */
  batchId: string | null;
  /** 1 for a request; more for a record folded from several (a PostgreSQL buffer past its bound). */
  requests: number;
  /** Prompt tokens, cached ones included (OpenAI's prompt_tokens / input_tokens). */
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  /** The model's price when it was used; null: the model has no price. */
  price: ModelPrice | null;
}

/** What a report reads: time range, and optionally one kind and one tenant; the rest is filtered by the report. */
export interface UsageScan {
  /** Unix seconds, inclusive. */
  fromSeconds: number;
  /** Unix seconds, exclusive. */
  toSeconds: number;
  /** Buckets are [fromSeconds + i × widthSeconds, …): rows come summed per bucket index. */
  widthSeconds: number;
  /** null: both kinds (costs). */
  kind: UsageKind | null;
  /** null: every tenant. */
  tenantId: string | null;
}

/** Records of one bucket with the same tenant, key, model, batch, kind and price, summed. */
export interface UsageRow {
  bucket: number;
  kind: UsageKind;
  tenantId: string;
  apiKeyId: string | null;
  model: string;
  batchId: string | null;
  requests: number;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
  price: ModelPrice | null;
}

export interface UsageLog {
  /** Stores the record; durable when it resolves (or, for a networked log whose database is away, buffered until it returns). */
  record(r: UsageRecord): Promise<void>;
  scan(q: UsageScan): Promise<UsageRow[]>;
  close(): Promise<void>;
}

/** A fresh record id. */
export function newUsageRecordId(): string {
  return crypto.randomUUID();
}

/** The columns both SQL logs read, in this order. */
export interface RawUsageRow {
  bucket: number | string;
  kind: string;
  tenant_id: string;
  api_key_id: string | null;
  model: string;
  batch_id: string | null;
  price_input: number | string | null;
  price_cached: number | string | null;
  price_output: number | string | null;
  requests: number | string;
  input_tokens: number | string;
  cached_tokens: number | string;
  output_tokens: number | string;
}

/** A database row as a UsageRow (PostgreSQL returns sums of BIGINT as strings). */
export function usageRow(r: RawUsageRow): UsageRow {
  const n = (v: number | string) => (typeof v === "number" ? v : Number(v));
  return {
    bucket: n(r.bucket),
    kind: r.kind as UsageKind,
    tenantId: r.tenant_id,
    apiKeyId: r.api_key_id,
    model: r.model,
    batchId: r.batch_id,
    requests: n(r.requests),
    inputTokens: n(r.input_tokens),
    cachedTokens: n(r.cached_tokens),
    outputTokens: n(r.output_tokens),
    price: r.price_input === null ? null : { input: n(r.price_input), cachedInput: n(r.price_cached ?? r.price_input), output: n(r.price_output ?? 0) },
  };
}

/** The record's columns, in the order both SQL logs insert them. */
export function recordValues(
  r: UsageRecord,
): [string, number, string, string, string | null, string, string | null, number, number, number, number, number | null, number | null, number | null] {
  return [
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
  ];
}

const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS usage_records (
  id TEXT PRIMARY KEY,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  api_key_id TEXT,
  model TEXT NOT NULL,
  batch_id TEXT,
  requests INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  price_input REAL,
  price_cached REAL,
  price_output REAL
) STRICT;
CREATE INDEX IF NOT EXISTS usage_records_at ON usage_records(at);
CREATE INDEX IF NOT EXISTS usage_records_tenant_at ON usage_records(tenant_id, at);
`;

// Hourly rollups: every record is also added, in the same transaction and
// only when its insert inserted (a duplicate id adds nothing), to one row per
// UTC hour, kind, tenant, key, model, batch and price. A report whose buckets
// are whole hours reads those rows instead of the records: a month is at most
// 744 rows per dimension instead of one per request. The dimension columns
// are NOT NULL so they can be a primary key (SQLite's unique indexes, and
// PostgreSQL's before 15, treat NULLs as distinct): '' is "no key" / "not a
// batch line" (ids are never empty) and -1 "no price" (prices are ≥ 0).
export const HOUR = 3600;

const SQLITE_ROLLUP_SCHEMA = `
CREATE TABLE usage_rollups (
  hour INTEGER NOT NULL,
  kind TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  api_key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  batch_id TEXT NOT NULL,
  price_input REAL NOT NULL,
  price_cached REAL NOT NULL,
  price_output REAL NOT NULL,
  requests INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  PRIMARY KEY (hour, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_rollups_tenant_hour ON usage_rollups(tenant_id, hour);
`;

/** The rollup's key and sums, from usage_records' columns (an expression per column, for INSERT … SELECT). */
export const ROLLUP_COLUMNS =
  "hour, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output, requests, input_tokens, cached_tokens, output_tokens";
export const ROLLUP_KEY = "hour, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output";
export const ROLLUP_FROM_RECORDS = `(at - at % ${HOUR}), kind, tenant_id, COALESCE(api_key_id, ''), model, COALESCE(batch_id, ''), COALESCE(price_input, -1), COALESCE(price_cached, -1), COALESCE(price_output, -1),
    SUM(requests), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens)`;
export const ROLLUP_ADD = `ON CONFLICT (${ROLLUP_KEY}) DO UPDATE SET requests = usage_rollups.requests + excluded.requests,
    input_tokens = usage_rollups.input_tokens + excluded.input_tokens, cached_tokens = usage_rollups.cached_tokens + excluded.cached_tokens,
    output_tokens = usage_rollups.output_tokens + excluded.output_tokens`;

/** What a scan reads: whole hours from the rollups, the rest from the records. */
export interface ScanPlan {
  /** Rollup hours [lo, hi) read, except those that straddle a bucket edge; null: none. */
  rollups: { lo: number; hi: number } | null;
  /** Record time ranges [lo, hi), disjoint, ascending. */
  records: Array<{ lo: number; hi: number }>;
}

/**
 * Which hours of a scan come from the rollups and which times from the
 * records: pure. An hour is read from the rollups when it lies wholly inside
 * [from, to) and inside one bucket; that is every hour when the width is
 * whole hours and `from` and `to` fall on UTC hours. Otherwise the records
 * cover the rest: the partial hours at either end and, when `from` is not on
 * an hour, the hour around each bucket edge (at most buckets + 1 hours; so
 * 1h buckets off the hour read records only, at most a week of them). A
 * width that is not whole hours (1m) reads records only; its pages are at
 * most a day (1440 buckets).
 */
export function planScan(q: Pick<UsageScan, "fromSeconds" | "toSeconds" | "widthSeconds">): ScanPlan {
  const { fromSeconds: from, toSeconds: to, widthSeconds: width } = q;
  const floorH = (t: number) => t - (t % HOUR);
  const ceilH = (t: number) => floorH(t + HOUR - 1);
  const lo = ceilH(from);
  const hi = floorH(to);
  // Not whole hours (1m), no whole hour inside, or hour buckets off the hour (every hour straddles an edge): records only.
  if (width % HOUR !== 0 || lo >= hi || (width === HOUR && from !== lo)) return { rollups: null, records: to > from ? [{ lo: from, hi: to }] : [] };
  const parts: Array<{ lo: number; hi: number }> = [];
  if (from < lo) parts.push({ lo: from, hi: lo });
  if (from % HOUR !== 0) {
    for (let edge = from + width; edge < to; edge += width) parts.push({ lo: Math.max(from, floorH(edge)), hi: Math.min(to, ceilH(edge)) });
  }
  if (hi < to) parts.push({ lo: hi, hi: to });
  const records: ScanPlan["records"] = [];
  for (const p of parts) {
    const last = records.at(-1);
    if (last && p.lo <= last.hi) last.hi = Math.max(last.hi, p.hi);
    else records.push({ ...p });
  }
  return { rollups: { lo, hi }, records };
}

/** Binds named parameters: SQLite by name (@from…), PostgreSQL by position ($1…, typed: some appear only beside IS NULL). */
const SCAN_PARAMS = ["from", "width", "lo", "hi", "kind", "tenant"] as const;
const SCAN_TYPES = ["bigint", "bigint", "bigint", "bigint", "text", "text"];
function scanParam(dialect: "sqlite" | "postgres", name: (typeof SCAN_PARAMS)[number]): string {
  const i = SCAN_PARAMS.indexOf(name);
  return dialect === "sqlite" ? `@${name}` : `$${i + 1}::${SCAN_TYPES[i]}`;
}

/** A scan's parameters for one part of its plan, in SCAN_PARAMS order (PostgreSQL) or by name (SQLite). */
export function scanParams(q: UsageScan, part: { lo: number; hi: number }) {
  return { from: q.fromSeconds, width: q.widthSeconds, lo: part.lo, hi: part.hi, kind: q.kind, tenant: q.tenantId };
}
export function scanParamList(q: UsageScan, part: { lo: number; hi: number }): unknown[] {
  const p = scanParams(q, part);
  return SCAN_PARAMS.map((n) => p[n]);
}

/** Records in [@lo, @hi) summed per bucket (of @width from @from) and dimension, in SQLite's or PostgreSQL's dialect. */
export function scanSql(dialect: "sqlite" | "postgres"): string {
  const p = (name: (typeof SCAN_PARAMS)[number]) => scanParam(dialect, name);
  // at ≥ from, so truncating division is floor division (CAST: SQLite may bind a number as REAL).
  return `SELECT CAST((at - ${p("from")}) / ${p("width")} AS BIGINT) AS bucket, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output,
    SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, SUM(cached_tokens) AS cached_tokens, SUM(output_tokens) AS output_tokens
  FROM usage_records
  WHERE at >= ${p("lo")} AND at < ${p("hi")} AND (${p("kind")} IS NULL OR kind = ${p("kind")}) AND (${p("tenant")} IS NULL OR tenant_id = ${p("tenant")})
  GROUP BY 1, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output`;
}

/** Rollup hours in [@lo, @hi) that lie inside one bucket, summed per bucket and dimension, as scanSql's columns. */
export function rollupScanSql(dialect: "sqlite" | "postgres"): string {
  const p = (name: (typeof SCAN_PARAMS)[number]) => scanParam(dialect, name);
  return `SELECT CAST((hour - ${p("from")}) / ${p("width")} AS BIGINT) AS bucket, kind, tenant_id, NULLIF(api_key_id, '') AS api_key_id, model, NULLIF(batch_id, '') AS batch_id,
    NULLIF(price_input, -1) AS price_input, NULLIF(price_cached, -1) AS price_cached, NULLIF(price_output, -1) AS price_output,
    SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, SUM(cached_tokens) AS cached_tokens, SUM(output_tokens) AS output_tokens
  FROM usage_rollups
  WHERE hour >= ${p("lo")} AND hour < ${p("hi")} AND (hour - ${p("from")}) % ${p("width")} + ${HOUR} <= ${p("width")}
    AND (${p("kind")} IS NULL OR kind = ${p("kind")}) AND (${p("tenant")} IS NULL OR tenant_id = ${p("tenant")})
  GROUP BY 1, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output`;
}

const RECORD_SCAN_SQL = scanSql("sqlite");
const ROLLUP_SCAN_SQL = rollupScanSql("sqlite");

/** One worker thread with a read-only connection, started on the first report and answering one scan at a time. */
class ScanWorker {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: Error) => void }>();
  private closed = false;

  constructor(private readonly file: string) {}

  run(parts: ScanJob["parts"]): Promise<unknown[]> {
    if (this.closed) return Promise.reject(new Error("the usage log is closed"));
    const worker = (this.worker ??= this.start());
    // Referenced while a scan is in flight, so the process waits for its answer.
    if (this.pending.size === 0) worker.ref();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, parts } satisfies ScanJob);
    });
  }

  private start(): Worker {
    const worker = new Worker(new URL("./sqliteScanWorker.js", import.meta.url), { workerData: { file: this.file } });
    // Idle, it must not keep the process alive.
    worker.unref();
    worker.on("message", (reply: ScanReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) p?.resolve(reply.rows);
      else p?.reject(new Error(reply.message));
      if (this.pending.size === 0) worker.unref();
    });
    // Its scans fail with it; the next scan starts a new worker. An exit after
    // an error (or after close) is about a worker already replaced: ignored.
    const fail = (err: Error) => {
      if (this.worker !== worker) return;
      this.worker = null;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the usage report worker exited (${code})`)));
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    for (const p of this.pending.values()) p.reject(new Error("the usage log is closed"));
    this.pending.clear();
    await worker?.terminate();
  }
}

/** The usage log in <data-dir>/llamux.db, through a connection of its own (it works in single-tenant mode too). */
export class SqliteUsageLog implements UsageLog {
  private readonly insert: Statement;
  private readonly addToRollup: Statement;
  /** Report reads run on a worker thread (sqliteScanWorker.ts), never on the event loop. */
  private readonly scans: ScanWorker;
  private readonly write: (values: ReturnType<typeof recordValues>) => void;

  private constructor(
    private readonly db: Db,
    file: string,
  ) {
    this.scans = new ScanWorker(file);
    this.insert = db.prepare(
      `INSERT INTO usage_records (id, at, kind, tenant_id, api_key_id, model, batch_id, requests, input_tokens, cached_tokens, output_tokens, price_input, price_cached, price_output)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.addToRollup = db.prepare(
      `INSERT INTO usage_rollups (${ROLLUP_COLUMNS}) VALUES (@hour, @kind, @tenant, @key, @model, @batch, @pi, @pc, @po, @requests, @input, @cached, @output) ${ROLLUP_ADD}`,
    );
    // One transaction: the rollup moves only when the record was new (a duplicate id changes nothing).
    this.write = db.transaction((v: ReturnType<typeof recordValues>) => {
      if (this.insert.run(...v).changes === 0) return;
      const [, at, kind, tenant, key, model, batch, requests, input, cached, output, pi, pc, po] = v;
      this.addToRollup.run({
        hour: at - (at % HOUR),
        kind,
        tenant,
        key: key ?? "",
        model,
        batch: batch ?? "",
        pi: pi ?? -1,
        pc: pc ?? -1,
        po: po ?? -1,
        requests,
        input,
        cached,
        output,
      });
    });
  }

  static open(dataDir: string): SqliteUsageLog {
    const { db, file } = openDatabase(dataDir, SQLITE_SCHEMA);
    try {
      ensureSqliteRollups(db);
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteUsageLog(db, file);
  }

  // The transaction runs before the first await: the row is committed (WAL, synchronous=FULL) when record() returns.
  async record(r: UsageRecord): Promise<void> {
    this.write(recordValues(r));
  }

  async scan(q: UsageScan): Promise<UsageRow[]> {
    const plan = planScan(q);
    const parts = [
      ...(plan.rollups ? [{ sql: ROLLUP_SCAN_SQL, params: scanParams(q, plan.rollups) }] : []),
      ...plan.records.map((part) => ({ sql: RECORD_SCAN_SQL, params: scanParams(q, part) })),
    ];
    if (parts.length === 0) return [];
    const rows = (await this.scans.run(parts)) as RawUsageRow[];
    return rows.map(usageRow);
  }

  async close(): Promise<void> {
    await this.scans.close();
    if (this.db.open) this.db.close();
  }
}

/** Creates usage_rollups when missing and fills it from the records already there (a database from before the rollups). */
function ensureSqliteRollups(db: Db): void {
  const exists = () => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_rollups'").get() !== undefined;
  if (exists()) return;
  // IMMEDIATE: a second process opening the same file waits, then finds the table made.
  db.transaction(() => {
    if (exists()) return;
    db.exec(SQLITE_ROLLUP_SCHEMA);
    db.exec(`INSERT INTO usage_rollups (${ROLLUP_COLUMNS}) SELECT ${ROLLUP_FROM_RECORDS} FROM usage_records GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`);
  }).immediate();
}
