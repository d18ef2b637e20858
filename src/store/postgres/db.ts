// The one way llamux talks to PostgreSQL: a bounded pg.Pool with connection
// and query deadlines (a database that has gone away costs a request a quick
// 503, never a hang), parameterised queries only, and transactions that
// always release their client. Connection-level failures become
// StoreUnavailableError; anything else (a constraint violated, a bug) passes
// through unchanged.
import pg from "pg";
import { StoreUnavailableError } from "../unavailable.js";

export interface PgOptions {
  /** postgres://user:password@host:port/database */
  url: string;
  /** Most connections this process holds at once. */
  poolSize: number;
  /** A connection not made in this long fails (the request gets its 503). */
  connectTimeoutMs?: number;
  /** A statement without an answer in this long fails (the server cancels it, and the client stops waiting); 0: no limit. */
  queryTimeoutMs?: number;
}

export const PG_DEFAULTS = { connectTimeoutMs: 2000, queryTimeoutMs: 5000 } as const;

export type Row = Record<string, unknown>;

/** What a query runs on: the pool, or one client inside a transaction. */
export interface Queryable {
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Rows changed by an INSERT, UPDATE or DELETE. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>;
}

// SQLSTATE classes and codes that mean "the database is not there right now":
// 08 connection exceptions, 57P01..57P03 shutdown / cannot connect now,
// 53300 too many connections, 40001/40P01 are NOT here (they are the caller's to retry).
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "53000"]);
const UNAVAILABLE_NODE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE", "ENOENT"]);

/** Whether `err` says the database cannot be reached (as opposed to a query that is wrong). Pure. */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  if (code.startsWith("08") || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_NODE_CODES.has(code)) return true;
  const message = typeof e?.message === "string" ? e.message : "";
  // pg's own errors carry no code: a lost or never-made connection, a query deadline.
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|connection is not open|Client was closed|Cannot use a pool after calling end/i.test(
    message,
  );
}

function wrap(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !isUnavailable(err)) return err;
  return new StoreUnavailableError(`the database is unavailable: ${(err as Error).message}`, err);
}

/** Notes, on the way out, whether `err` (or success: undefined) says the database is there. */
function seen(db: PgDatabase, err?: unknown): void {
  db.available = err === undefined || !isUnavailable(err);
}

/** The URL with its password replaced, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable database URL)";
  }
}

export class PgDatabase implements Queryable {
  readonly pool: pg.Pool;
  private closed = false;
  /** Whether the last statement reached the database (false once one failed for want of it). */
  available = true;

  constructor(options: PgOptions, onIdleError: (err: Error) => void = () => undefined) {
    const queryTimeoutMs = options.queryTimeoutMs ?? PG_DEFAULTS.queryTimeoutMs;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs ?? PG_DEFAULTS.connectTimeoutMs,
      // The server cancels a statement past the deadline; the client gives up a little later in
      // case the server cannot even answer (a dead link). Neither when the deadline is 0.
      statement_timeout: queryTimeoutMs > 0 ? queryTimeoutMs : false,
      ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs + 1000 } : {}),
      // "Acknowledged means committed to disk" must not depend on how the server was set up.
      options: "-c synchronous_commit=on",
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: "llamux",
    });
    // An idle client whose server went away emits 'error' on the pool; with no
    // listener that would crash the process. The pool drops the client and makes
    // a new one on the next query, which is how it recovers when the database returns.
    this.pool.on("error", onIdleError);
  }

  async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      const { rows } = await this.pool.query<R>(sql, params as unknown[]);
      seen(this);
      return rows;
    } catch (err) {
      seen(this, err);
      throw wrap(err);
    }
  }

  async execute(sql: string, params: readonly unknown[] = []): Promise<number> {
    try {
      const { rowCount } = await this.pool.query(sql, params as unknown[]);
      seen(this);
      return rowCount ?? 0;
    } catch (err) {
      seen(this, err);
      throw wrap(err);
    }
  }

  /** Runs `work` in one transaction on one client: COMMIT when it resolves, ROLLBACK when it throws. */
  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      seen(this, err);
      throw wrap(err);
    }
    let broken: unknown;
    // A checked-out client has no listener of the pool's: a connection lost mid-transaction
    // would emit 'error' with none and take the process down. Its query rejects as well.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on("error", onError);
    const tx: Queryable = {
      query: async <R extends Row = Row>(sql: string, params: readonly unknown[] = []) => (await client.query<R>(sql, params as unknown[])).rows,
      execute: async (sql: string, params: readonly unknown[] = []) => (await client.query(sql, params as unknown[])).rowCount ?? 0,
    };
    try {
      await client.query("BEGIN");
      const result = await work(tx);
      await client.query("COMMIT");
      seen(this);
      return result;
    } catch (err) {
      seen(this, err);
      try {
        await client.query("ROLLBACK");
      } catch (rollbackErr) {
        broken = rollbackErr; // the connection is unusable: destroy it rather than return it to the pool
      }
      if (isUnavailable(err)) broken ??= err;
      throw wrap(err);
    } finally {
      client.off("error", onError);
      client.release(broken === undefined ? undefined : (broken as Error));
    }
  }

  /** Ends every connection; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** `value` (a BIGINT/INTEGER column, which pg gives as a string for BIGINT) as a number. */
export function num(value: unknown): number {
  return typeof value === "number" ? value : Number(value);
}
