// The audit log in <data-dir>/llamux.db, beside the tenants (the embedded
// default). One process writes the file, and better-sqlite3 runs each append
// synchronously in an IMMEDIATE transaction, so the head read and the insert
// are never interleaved with another append.
import type Database from "better-sqlite3";
import { openDatabase } from "../store/sqlite.js";
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
} from "./auditStore.js";
import { nextRecord, type AuditEntry, type AuditRecord } from "./record.js";

export const SQLITE_AUDIT_SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_log (
  seq INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  effective_at_ms INTEGER NOT NULL,
  actor_type TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  ip_address TEXT,
  resource_id TEXT,
  request_id TEXT,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_log_effective_at ON audit_log(effective_at_ms);
CREATE INDEX IF NOT EXISTS audit_log_type ON audit_log(type, seq);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log(actor_id, seq);
CREATE INDEX IF NOT EXISTS audit_log_resource ON audit_log(resource_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
`;

export class SqliteAuditStore implements AuditStore {
  private readonly owned: boolean;

  /** Over a handle another store owns (the tenants' one, in the server): close() leaves it open. */
  constructor(
    private readonly db: Database.Database,
    options: { owned?: boolean } = {},
  ) {
    this.owned = options.owned ?? false;
    db.exec(SQLITE_AUDIT_SCHEMA);
  }

  /** Opens `<dataDir>/llamux.db` for this store alone (llamux audit verify, tests). */
  static open(dataDir: string): SqliteAuditStore {
    return new SqliteAuditStore(openDatabase(dataDir, SQLITE_AUDIT_SCHEMA).db, { owned: true });
  }

  async append(entry: AuditEntry): Promise<AuditRecord> {
    return this.db
      .transaction(() => {
        const head = this.db.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: string } | undefined;
        const r = nextRecord(head ?? null, entry);
        this.db.prepare(`INSERT INTO audit_log (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...auditRowValues(r));
        return r;
      })
      .immediate();
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    const { sql, params } = listSql(query, () => "?");
    return toPage(this.db.prepare(sql).all(...params) as AuditRow[], query);
  }

  async scan(afterSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = this.db.prepare(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`).all(afterSeq, limit) as AuditRow[];
    return rows.map(toAuditRecord);
  }

  async close(): Promise<void> {
    if (this.owned && this.db.open) this.db.close();
  }
}
