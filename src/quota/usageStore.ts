// Where daily and lifetime token usage outlives the process. The ledger loads
// it once at start and adds each request's actual tokens when it settles, so
// every usage figure a client was sent is on disk before the next request of
// that tenant is admitted. Rows are per tenant per UTC day: the lifetime total
// is their sum, today's usage is today's row.
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
  load(): Map<string, StoredUsage>;
  /** Adds `tokens` to the tenant's usage on `day`; durable when it returns. */
  add(tenantId: string, day: string, tokens: number): void;
}

/**
 * Usage in an SQLite table `usage` of the database it is given (the caller
 * opens and closes the database; journal mode is the caller's choice, each
 * add is its own committed transaction either way).
 */
export class SqliteUsageStore implements UsageStore {
  private readonly upsert: Statement<[string, string, number]>;
  private readonly latest: Statement<[], { tenantId: string; day: string; dayTokens: number; lifetimeTokens: number }>;

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
  }

  load(): Map<string, StoredUsage> {
    const out = new Map<string, StoredUsage>();
    for (const row of this.latest.all()) {
      out.set(row.tenantId, { day: row.day, dayTokens: row.dayTokens, lifetimeTokens: row.lifetimeTokens });
    }
    return out;
  }

  add(tenantId: string, day: string, tokens: number): void {
    if (tokens === 0) return;
    this.upsert.run(tenantId, day, tokens);
  }
}

/** The same contract in memory, for tests and for servers run without a data directory. */
export class MemoryUsageStore implements UsageStore {
  /** tenant → day → tokens */
  private readonly rows = new Map<string, Map<string, number>>();

  load(): Map<string, StoredUsage> {
    const out = new Map<string, StoredUsage>();
    for (const [tenantId, days] of this.rows) {
      let day = "";
      let lifetimeTokens = 0;
      for (const [d, tokens] of days) {
        lifetimeTokens += tokens;
        if (d > day) day = d;
      }
      out.set(tenantId, { day, dayTokens: days.get(day) ?? 0, lifetimeTokens });
    }
    return out;
  }

  add(tenantId: string, day: string, tokens: number): void {
    if (tokens === 0) return;
    let days = this.rows.get(tenantId);
    if (!days) this.rows.set(tenantId, (days = new Map()));
    days.set(day, (days.get(day) ?? 0) + tokens);
  }
}
