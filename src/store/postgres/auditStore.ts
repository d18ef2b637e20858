// The audit log in the shared PostgreSQL database. Every replica appends to
// one chain, so appends are serialised: each runs in a transaction that first
// takes a transaction-scoped advisory lock, then reads the head and inserts
// after it. Two replicas appending at once queue on the lock; neither can read
// a head the other is about to replace, so the chain never forks (and seq's
// primary key would refuse a fork even if the lock were bypassed).
import {
  AUDIT_COLUMNS,
  auditRowValues,
  listSql,
  toAuditRecord,
  toPage,
  type AuditPage,
  type AuditQuery,
  type AuditRow,
  type AuditStore,
} from "../../audit/auditStore.js";
import { nextRecord, type AuditEntry, type AuditRecord } from "../../audit/record.js";
import type { PgDatabase } from "./db.js";

/** pg_advisory_xact_lock key serialising audit appends ("audit" in ASCII, as an int8). */
export const AUDIT_LOCK_KEY = "418581342580";

export class PgAuditStore implements AuditStore {
  constructor(private readonly db: PgDatabase) {}

  async append(entry: AuditEntry): Promise<AuditRecord> {
    return this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [AUDIT_LOCK_KEY]);
      const [head] = await tx.query<{ seq: string; hash: string }>("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
      const r = nextRecord(head ? { seq: Number(head.seq), hash: head.hash } : null, entry);
      await tx.execute(`INSERT INTO audit_log (${AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, auditRowValues(r));
      return r;
    });
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    const { sql, params } = listSql(query, (i) => `$${i}`);
    return toPage(await this.db.query<AuditRow & Record<string, unknown>>(sql, params), query);
  }

  async scan(afterSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.db.query<AuditRow & Record<string, unknown>>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, [
      afterSeq,
      limit,
    ]);
    return rows.map(toAuditRecord);
  }

  /** The pool is the PostgresState's: it closes it. */
  async close(): Promise<void> {}
}
