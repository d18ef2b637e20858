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
// own; reports fold the rows with one GROUP BY over an index on time.
//
// A record carries the model's prices at the time it was written, so a price
// changed later reprices nothing already used.
import crypto from "node:crypto";
import type { Database as Db, Statement } from "better-sqlite3";
import { openDatabase } from "../store/sqlite.js";

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
export function recordValues(r: UsageRecord): [string, number, string, string, string | null, string, string | null, number, number, number, number, number | null, number | null, number | null] {
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

/** Sums per bucket and dimension, in SQLite's or PostgreSQL's dialect (placeholders, integer division). */
export function scanSql(dialect: "sqlite" | "postgres"): string {
  // SQLite binds by name (@from…), PostgreSQL by position ($1…, typed: some appear only beside IS NULL).
  const names = ["from", "width", "to", "kind", "tenant"];
  const types = ["bigint", "bigint", "bigint", "text", "text"];
  const p = (name: string) => {
    const i = names.indexOf(name);
    return dialect === "sqlite" ? `@${name}` : `$${i + 1}::${types[i]}`;
  };
  // at ≥ from, so truncating division is floor division (CAST: SQLite may bind a number as REAL).
  return `SELECT CAST((at - ${p("from")}) / ${p("width")} AS BIGINT) AS bucket, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output,
    SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, SUM(cached_tokens) AS cached_tokens, SUM(output_tokens) AS output_tokens
  FROM usage_records
  WHERE at >= ${p("from")} AND at < ${p("to")} AND (${p("kind")} IS NULL OR kind = ${p("kind")}) AND (${p("tenant")} IS NULL OR tenant_id = ${p("tenant")})
  GROUP BY 1, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output`;
}

/** The usage log in <data-dir>/llamux.db, through a connection of its own (it works in single-tenant mode too). */
export class SqliteUsageLog implements UsageLog {
  private readonly insert: Statement;
  private readonly select: Statement;

  private constructor(private readonly db: Db) {
    this.insert = db.prepare(
      `INSERT INTO usage_records (id, at, kind, tenant_id, api_key_id, model, batch_id, requests, input_tokens, cached_tokens, output_tokens, price_input, price_cached, price_output)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.select = db.prepare(scanSql("sqlite"));
  }

  static open(dataDir: string): SqliteUsageLog {
    return new SqliteUsageLog(openDatabase(dataDir, SQLITE_SCHEMA).db);
  }

  // The statement runs before the first await: the row is committed (WAL, synchronous=FULL) when record() returns.
  async record(r: UsageRecord): Promise<void> {
    this.insert.run(...recordValues(r));
  }

  async scan(q: UsageScan): Promise<UsageRow[]> {
    const rows = this.select.all({ from: q.fromSeconds, width: q.widthSeconds, to: q.toSeconds, kind: q.kind, tenant: q.tenantId }) as RawUsageRow[];
    return rows.map(usageRow);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
