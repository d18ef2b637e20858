// Where daily and lifetime token usage outlives the process. The ledger loads
// it once at start and adds each request's actual tokens when it settles, so
// every usage figure a client was sent is on disk before the next request of
// that tenant is admitted. Rows are per tenant per UTC day: the lifetime total
// is their sum, today's usage is today's row.
//
// Async because a networked store (PostgreSQL) implements it too; the SQLite
// and memory stores do their work synchronously inside the call, so with them
// a write is on disk by the time add() returns its (already settled) promise.
import type { Database, Statement } from "better-sqlite3";

export interface StoredUsage {
  /** The latest UTC day ("YYYY-MM-DD") with usage. */
  day: string;
  /** Tokens used on `day`. */
  dayTokens: number;
  /** Tokens used over all days. */
  lifetimeTokens: number;
}

export interface UsageStore {
  /** Every tenant's latest day and lifetime total. */
  load(): Promise<Map<string, StoredUsage>>;
  /** One tenant's (what a shared quota seeds its counters from); null: no usage stored. */
  usageOf(tenantId: string): Promise<StoredUsage | null>;
  /** Adds `tokens` to the tenant's usage on `day`; durable when it resolves. */
  add(tenantId: string, day: string, tokens: number): Promise<void>;
}

/**
 * Usage in an SQLite table `usage` of the database it is given (the caller
 * opens and closes the database; journal mode is the caller's choice, each
 * add is its own committed transaction either way).
 */
export class SqliteUsageStore implements UsageStore {
  private readonly upsert: Statement<[string, string, number]>;
  private readonly latest: Statement<[], { tenantId: string; day: string; dayTokens: number; lifetimeTokens: number }>;
  private readonly latestOf: Statement<[string, string], { day: string; dayTokens: number; lifetimeTokens: number }>;

  constructor(db: Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS usage (
      tenant_id TEXT NOT NULL,
      day TEXT NOT NULL,
      tokens INTEGER NOT NULL,
      PRIMARY KEY (tenant_id, day)
    ) WITHOUT ROWID`);
    this.upsert = db.prepare(
      `INSERT INTO usage (tenant_id, day, tokens) VALUES (?, ?, ?)
       ON CONFLICT (tenant_id, day) DO UPDATE SET tokens = tokens + excluded.tokens`,
    );
    this.latest = db.prepare(
      `SELECT t.tenant_id AS tenantId, t.day AS day, u.tokens AS dayTokens, t.lifetime AS lifetimeTokens
       FROM (SELECT tenant_id, MAX(day) AS day, SUM(tokens) AS lifetime FROM usage GROUP BY tenant_id) AS t
       JOIN usage AS u ON u.tenant_id = t.tenant_id AND u.day = t.day`,
    );
    this.latestOf = db.prepare(
      `SELECT t.day AS day, u.tokens AS dayTokens, t.lifetime AS lifetimeTokens
       FROM (SELECT MAX(day) AS day, SUM(tokens) AS lifetime FROM usage WHERE tenant_id = ?) AS t
       JOIN usage AS u ON u.tenant_id = ? AND u.day = t.day`,
    );
  }

  async load(): Promise<Map<string, StoredUsage>> {
    const out = new Map<string, StoredUsage>();
    for (const row of this.latest.all()) {
      out.set(row.tenantId, { day: row.day, dayTokens: row.dayTokens, lifetimeTokens: row.lifetimeTokens });
    }
    return out;
  }

  async usageOf(tenantId: string): Promise<StoredUsage | null> {
    const row = this.latestOf.get(tenantId, tenantId);
    return row ? { day: row.day, dayTokens: row.dayTokens, lifetimeTokens: row.lifetimeTokens } : null;
  }

  // The statement runs before the first await: the row is committed when add() returns.
  async add(tenantId: string, day: string, tokens: number): Promise<void> {
    if (tokens === 0) return;
    this.upsert.run(tenantId, day, tokens);
  }
}

/** The same contract in memory, for tests and for servers run without a data directory. */
export class MemoryUsageStore implements UsageStore {
  /** tenant → day → tokens */
  private readonly rows = new Map<string, Map<string, number>>();

  async load(): Promise<Map<string, StoredUsage>> {
    const out = new Map<string, StoredUsage>();
    for (const tenantId of this.rows.keys()) out.set(tenantId, this.latest(tenantId)!);
    return out;
  }

  async usageOf(tenantId: string): Promise<StoredUsage | null> {
    return this.latest(tenantId);
  }

  async add(tenantId: string, day: string, tokens: number): Promise<void> {
    if (tokens === 0) return;
    let days = this.rows.get(tenantId);
    if (!days) this.rows.set(tenantId, (days = new Map()));
    days.set(day, (days.get(day) ?? 0) + tokens);
  }

  private latest(tenantId: string): StoredUsage | null {
    const days = this.rows.get(tenantId);
    if (!days) return null;
    let day = "";
    let lifetimeTokens = 0;
    for (const [d, tokens] of days) {
      lifetimeTokens += tokens;
      if (d > day) day = d;
    }
    return { day, dayTokens: days.get(day) ?? 0, lifetimeTokens };
  }
}
