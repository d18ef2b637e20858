// The usage log (src/usage/usageLog.ts) in PostgreSQL, shared by every replica.
// Each record is inserted under its own id with ON CONFLICT DO NOTHING, so a
// write retried after an ambiguous failure (committed, then timed out) counts
// once: the reports stay exact. The same statement adds the records it
// inserted, and only those, to their hourly rollups (migration 6).
//
// When the database cannot be reached, records are kept in memory, flushed in
// arrival order once it answers again, and reads include them. Past
// maxPendingRecords, a new record is folded into a buffered aggregate of the
// same tenant, key, model, batch, kind, price and minute (a record whose
// `requests` counts several): the buffer then grows with those, not with
// requests, and no token is dropped. An aggregate is only folded into until a
// flush has tried it; after that it is sealed (the database may hold it) and
// the next fold starts a new one, so a retry never writes a changed record
// under an id the database may already have.
import type { UsageLog, UsageRecord, UsageRow, UsageScan } from "../../usage/usageLog.js";
import {
  newUsageRecordId,
  planScan,
  recordValues,
  ROLLUP_ADD,
  ROLLUP_COLUMNS,
  ROLLUP_FROM_RECORDS,
  rollupScanSql,
  scanParamList,
  scanSql,
  usageRow,
  type RawUsageRow,
} from "../../usage/usageLog.js";
import { isUnavailable, type PgDatabase } from "./db.js";

export interface PgUsageLogOptions {
  /** Records kept one by one while the database is away; beyond, they are folded per minute. */
  maxPendingRecords?: number;
  /** How often a non-empty buffer retries its flush. */
  flushIntervalMs?: number;
  /** Told when buffering starts and when the buffer is written. */
  onEvent?: (event: UsageLogEvent) => void;
}

export type UsageLogEvent = { type: "buffering"; err: unknown } | { type: "flushed"; records: number };

const COLUMNS =
  "id, at, kind, tenant_id, api_key_id, model, batch_id, requests, input_tokens, cached_tokens, output_tokens, price_input, price_cached, price_output";
const TYPES = ["text", "bigint", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "float8", "float8", "float8"];
// One statement: the records that were new (RETURNING skips a duplicate id) are added to
// their hours' rollups (src/usage/usageLog.ts), summed first so a statement touches each
// rollup row once, in key order so two replicas' flushes lock rows in the same order.
const INSERT = `WITH inserted AS (
  INSERT INTO usage_records (${COLUMNS})
  SELECT * FROM unnest(${TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(", ")})
  ON CONFLICT (id) DO NOTHING
  RETURNING *
)
INSERT INTO usage_rollups (${ROLLUP_COLUMNS})
SELECT ${ROLLUP_FROM_RECORDS} FROM inserted GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
${ROLLUP_ADD}`;
const SCAN_RECORDS = scanSql("postgres");
const SCAN_ROLLUPS = rollupScanSql("postgres");

interface Pending {
  record: UsageRecord;
  /** A flush has tried it: it may be in the database, so nothing more is folded into it. */
  sealed: boolean;
}

/** The key records are folded under past the buffer's bound. */
function foldKey(r: UsageRecord): string {
  const minute = Math.floor(r.atSeconds / 60);
  return JSON.stringify([minute, r.kind, r.tenantId, r.apiKeyId, r.model, r.batchId, r.price]);
}

export class PgUsageLog implements UsageLog {
  /** Buffered records in arrival order (a Map keeps insertion order). */
  private readonly pending = new Map<string, Pending>();
  /** foldKey → id of the unsealed aggregate new records fold into. */
  private readonly folds = new Map<string, string>();
  private readonly maxPendingRecords: number;
  private readonly flushIntervalMs: number;
  private readonly onEvent: NonNullable<PgUsageLogOptions["onEvent"]>;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  /** `db` is migrated already and owned by the caller. */
  constructor(
    private readonly db: PgDatabase,
    options: PgUsageLogOptions = {},
  ) {
    this.maxPendingRecords = options.maxPendingRecords ?? 100_000;
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.onEvent = options.onEvent ?? (() => undefined);
  }

  /** Records (and aggregates) waiting for the database. */
  get pendingRecords(): number {
    return this.pending.size;
  }

  async record(r: UsageRecord): Promise<void> {
    // Behind a buffer, later records join it: the database sees them in order of arrival.
    if (this.pending.size > 0) {
      this.buffer(r);
      return;
    }
    try {
      await this.db.execute(INSERT, columns([r]));
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.onEvent({ type: "buffering", err });
      this.buffer(r);
    }
  }

  async scan(q: UsageScan): Promise<UsageRow[]> {
    // Whole hours from the rollups, the rest from the records (planScan): the parts are disjoint in time.
    const plan = planScan(q);
    const parts = [...(plan.rollups ? [{ sql: SCAN_ROLLUPS, part: plan.rollups }] : []), ...plan.records.map((part) => ({ sql: SCAN_RECORDS, part }))];
    const rows: UsageRow[] = [];
    for (const { sql, part } of parts) rows.push(...(await this.db.query<RawUsageRow & Record<string, unknown>>(sql, scanParamList(q, part))).map(usageRow));
    // What is buffered counts too (the report folds rows; duplicates of a dimension are fine).
    for (const { record: r } of this.pending.values()) {
      if (r.atSeconds < q.fromSeconds || r.atSeconds >= q.toSeconds) continue;
      if ((q.kind !== null && r.kind !== q.kind) || (q.tenantId !== null && r.tenantId !== q.tenantId)) continue;
      const { id: _, atSeconds, ...rest } = r;
      rows.push({ ...rest, bucket: Math.floor((atSeconds - q.fromSeconds) / q.widthSeconds) });
    }
    return rows;
  }

  /** Writes the buffer now (one statement); resolves when it is empty or the database is still away. */
  async flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => (this.flushing = null));
    return this.flushing;
  }

  /** Stops the retry timer and makes one last attempt to write the buffer. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.pending.size > 0) await this.flush().catch(() => undefined);
  }

  private buffer(r: UsageRecord): void {
    if (this.pending.size < this.maxPendingRecords) {
      this.pending.set(r.id, { record: r, sealed: false });
    } else {
      const key = foldKey(r);
      const into = this.pending.get(this.folds.get(key) ?? "");
      if (into && !into.sealed) {
        const a = into.record;
        into.record = {
          ...a,
          requests: a.requests + r.requests,
          inputTokens: a.inputTokens + r.inputTokens,
          cachedTokens: a.cachedTokens + r.cachedTokens,
          outputTokens: a.outputTokens + r.outputTokens,
        };
      } else {
        const id = newUsageRecordId();
        this.pending.set(id, { record: { ...r, id }, sealed: false });
        this.folds.set(key, id);
      }
    }
    if (!this.timer) {
      this.timer = setInterval(() => void this.flush().catch(() => undefined), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  private async flushOnce(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    for (const p of batch) p.sealed = true;
    try {
      await this.db.execute(INSERT, columns(batch.map((p) => p.record)));
    } catch (err) {
      if (isUnavailable(err)) return; // still away: the timer tries again
      throw err;
    }
    // Only what was written leaves the buffer; records added meanwhile wait for the next flush.
    for (const p of batch) this.pending.delete(p.record.id);
    for (const [key, id] of this.folds) if (!this.pending.has(id)) this.folds.delete(key);
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.onEvent({ type: "flushed", records: batch.length });
  }
}

/** Records as the INSERT's column arrays. */
function columns(records: readonly UsageRecord[]): unknown[][] {
  const out: unknown[][] = TYPES.map(() => []);
  for (const r of records) {
    for (const [i, v] of recordValues(r).entries()) out[i]!.push(v);
  }
  return out;
}
