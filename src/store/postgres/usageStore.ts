// Daily and lifetime token usage in PostgreSQL, shared by every replica: rows
// per tenant per UTC day, as in SqliteUsageStore. add() adds in the database
// (an upsert, so replicas settling at once never lose each other's tokens).
//
// When the database cannot be reached, usage is not dropped: the tokens are
// kept in memory (per tenant and day, so the buffer grows with tenants, not
// requests), counted, logged, and flushed once the database answers again.
// The buffer is bounded; past the bound a row is dropped and counted as lost.
// A query that timed out after the server had in fact committed is the one
// case where a flush can count tokens twice: usage is at least once, never lost
// while the process lives.

import type { StoredUsage, UsageStore } from "../../quota/usageStore.js";
import { isUnavailable, num, type PgDatabase } from "./db.js";

export type { StoredUsage };

export interface PgUsageStoreOptions {
  /** Most (tenant, day) rows kept in memory while the database is away. */
  maxPendingRows?: number;
  /** How often a non-empty buffer retries its flush. */
  flushIntervalMs?: number;
  /** Told when buffering starts, when the buffer is flushed, and when a row is lost. */
  onEvent?: (event: UsageBufferEvent) => void;
}

export type UsageBufferEvent =
  | { type: "buffering"; err: unknown }
  | { type: "flushed"; rows: number }
  | { type: "lost"; tenantId: string; day: string; tokens: number };

const LATEST = `SELECT t.tenant_id, t.day, u.tokens AS day_tokens, t.lifetime
  FROM (SELECT tenant_id, MAX(day) AS day, SUM(tokens) AS lifetime FROM usage WHERE ($1::text IS NULL OR tenant_id = $1) GROUP BY tenant_id) AS t
  JOIN usage AS u ON u.tenant_id = t.tenant_id AND u.day = t.day`;
const UPSERT = `INSERT INTO usage (tenant_id, day, tokens) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
  ON CONFLICT (tenant_id, day) DO UPDATE SET tokens = usage.tokens + excluded.tokens`;

/** UsageStore in PostgreSQL. add() is durable when it resolves, or (database unreachable) buffered: see pendingRows. */
export class PgUsageStore implements UsageStore {
  /** "tenant\0day" → tokens not yet in the database. */
  private readonly pending = new Map<string, number>();
  private readonly maxPendingRows: number;
  private readonly flushIntervalMs: number;
  private readonly onEvent: NonNullable<PgUsageStoreOptions["onEvent"]>;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Rows dropped because the buffer was full (and their tokens). */
  lostRows = 0;
  lostTokens = 0;

  /** `db` is migrated already and owned by the caller. */
  constructor(
    private readonly db: PgDatabase,
    options: PgUsageStoreOptions = {},
  ) {
    this.maxPendingRows = options.maxPendingRows ?? 100_000;
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.onEvent = options.onEvent ?? (() => undefined);
  }

  /** (tenant, day) rows waiting for the database. */
  get pendingRows(): number {
    return this.pending.size;
  }

  async load(): Promise<Map<string, StoredUsage>> {
    const out = new Map<string, StoredUsage>();
    for (const row of await this.db.query<{ tenant_id: string; day: string; day_tokens: string; lifetime: string }>(LATEST, [null])) {
      out.set(row.tenant_id, { day: row.day, dayTokens: num(row.day_tokens), lifetimeTokens: num(row.lifetime) });
    }
    for (const [key, tokens] of this.pending) {
      const [tenantId, day] = splitKey(key);
      out.set(tenantId, withPending(out.get(tenantId) ?? null, day, tokens));
    }
    return out;
  }

  async usageOf(tenantId: string): Promise<StoredUsage | null> {
    const [row] = await this.db.query<{ day: string; day_tokens: string; lifetime: string }>(LATEST, [tenantId]);
    let usage: StoredUsage | null = row ? { day: row.day, dayTokens: num(row.day_tokens), lifetimeTokens: num(row.lifetime) } : null;
    for (const [key, tokens] of this.pending) {
      const [t, day] = splitKey(key);
      if (t === tenantId) usage = withPending(usage, day, tokens);
    }
    return usage;
  }

  async add(tenantId: string, day: string, tokens: number): Promise<void> {
    if (tokens === 0) return;
    // Behind a buffer, later rows join it: the database sees usage in order of arrival.
    if (this.pending.size > 0) {
      this.buffer(tenantId, day, tokens);
      return;
    }
    try {
      await this.db.execute(UPSERT, [[tenantId], [day], [tokens]]);
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.onEvent({ type: "buffering", err });
      this.buffer(tenantId, day, tokens);
    }
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

  private buffer(tenantId: string, day: string, tokens: number): void {
    const key = `${tenantId}\0${day}`;
    if (!this.pending.has(key) && this.pending.size >= this.maxPendingRows) {
      this.lostRows++;
      this.lostTokens += tokens;
      this.onEvent({ type: "lost", tenantId, day, tokens });
      return;
    }
    this.pending.set(key, (this.pending.get(key) ?? 0) + tokens);
    if (!this.timer) {
      this.timer = setInterval(() => void this.flush().catch(() => undefined), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  private async flushOnce(): Promise<void> {
    if (this.pending.size === 0) return;
    const rows = [...this.pending];
    const keys = rows.map(([key]) => splitKey(key));
    try {
      await this.db.execute(UPSERT, [keys.map((k) => k[0]), keys.map((k) => k[1]), rows.map(([, tokens]) => tokens)]);
    } catch (err) {
      if (isUnavailable(err)) return; // still away: the timer tries again
      throw err;
    }
    // Only what was written leaves the buffer; rows added meanwhile stay for the next flush.
    for (const [key, tokens] of rows) {
      const left = (this.pending.get(key) ?? 0) - tokens;
      if (left > 0) this.pending.set(key, left);
      else this.pending.delete(key);
    }
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.onEvent({ type: "flushed", rows: rows.length });
  }
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf("\0");
  return [key.slice(0, i), key.slice(i + 1)];
}

/** `usage` with `tokens` more on `day` (which may be earlier, the same, or later than its latest day). Pure. */
export function withPending(usage: StoredUsage | null, day: string, tokens: number): StoredUsage {
  if (!usage) return { day, dayTokens: tokens, lifetimeTokens: tokens };
  if (day > usage.day) return { day, dayTokens: tokens, lifetimeTokens: usage.lifetimeTokens + tokens };
  return { day: usage.day, dayTokens: usage.dayTokens + (day === usage.day ? tokens : 0), lifetimeTokens: usage.lifetimeTokens + tokens };
}
