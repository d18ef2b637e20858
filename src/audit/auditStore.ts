// The audit log's store: append-only, hash-chained (record.ts). SQLite keeps
// it in llamux.db beside the tenants (sqliteAuditStore.ts); PostgreSQL in the
// shared database (store/postgres/auditStore.ts), where appends from every
// replica are serialised so the chain never forks. Both refuse UPDATE and
// DELETE with triggers: only someone who owns the database can change a
// record, and `llamux audit verify` then names it.
import { canonicalJson, type AuditEntry, type AuditEventType, type AuditRecord } from "./record.js";

/** GET /admin/audit's filters, validated (query.ts). Times in whole seconds, as effective_at is. */
export interface AuditQuery {
  effectiveAt: { gt?: number; gte?: number; lt?: number; lte?: number };
  types: AuditEventType[];
  actorIds: string[];
  resourceIds: string[];
  /** 1..100. */
  limit: number;
  /** Cursors, as seqs: older than `after`, or newer than `before` (at most one of them). */
  afterSeq: number | null;
  beforeSeq: number | null;
}

export interface AuditPage {
  /** Newest first. */
  records: AuditRecord[];
  /** More records match beyond this page, in the direction it was read. */
  hasMore: boolean;
}

export interface AuditStore {
  /** Adds `entry` at the head of the chain; resolves once it is committed. */
  append(entry: AuditEntry): Promise<AuditRecord>;
  list(query: AuditQuery): Promise<AuditPage>;
  /** Records with seq > afterSeq in seq order, at most `limit` (verify reads the chain with it). */
  scan(afterSeq: number, limit: number): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

/** One row of the audit_log table, in both databases (pg gives BIGINTs as strings). */
export interface AuditRow {
  seq: number | string;
  type: string;
  effective_at_ms: number | string;
  actor_type: string;
  actor_id: string;
  ip_address: string | null;
  resource_id: string | null;
  request_id: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

export const AUDIT_COLUMNS = "seq, type, effective_at_ms, actor_type, actor_id, ip_address, resource_id, request_id, details, prev_hash, hash";

/** A record's values in AUDIT_COLUMNS order, as both stores insert them (details as the canonical JSON that was hashed). */
export function auditRowValues(r: AuditRecord): unknown[] {
  return [r.seq, r.type, r.effectiveAtMs, r.actor.type, r.actor.id, r.actor.ipAddress, r.resourceId, r.requestId, canonicalJson(r.details), r.prevHash, r.hash];
}

/** A row as it is stored; the type is not checked here, so verify sees whatever a tamperer wrote. */
export function toAuditRecord(row: AuditRow): AuditRecord {
  let details: AuditRecord["details"];
  try {
    details = JSON.parse(row.details) as AuditRecord["details"];
  } catch {
    // Not JSON (tampered): kept as text so the hash check fails on it rather than the reader.
    details = { unparseable: row.details };
  }
  return {
    seq: Number(row.seq),
    type: row.type as AuditEventType,
    effectiveAtMs: Number(row.effective_at_ms),
    actor: { type: row.actor_type as AuditRecord["actor"]["type"], id: row.actor_id, ipAddress: row.ip_address },
    resourceId: row.resource_id,
    requestId: row.request_id,
    details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/**
 * The WHERE clause (without the word) and ORDER/LIMIT of a list query, for
 * either database: `param(i)` writes the i-th placeholder (1-based). Pure.
 * effective_at filters are in seconds over a column in milliseconds: a record
 * at 12.5 s has effective_at 12, so "gt 12" starts at 13 s.
 */
export function listSql(query: AuditQuery, param: (i: number) => string): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (clause: (p: string) => string, value: unknown) => {
    params.push(value);
    where.push(clause(param(params.length)));
  };
  const list = (column: string, values: string[]) => {
    if (values.length === 0) return;
    const ps = values.map((v) => {
      params.push(v);
      return param(params.length);
    });
    where.push(`${column} IN (${ps.join(", ")})`);
  };
  const { gt, gte, lt, lte } = query.effectiveAt;
  if (gt !== undefined) add((p) => `effective_at_ms >= ${p}`, (gt + 1) * 1000);
  if (gte !== undefined) add((p) => `effective_at_ms >= ${p}`, gte * 1000);
  if (lt !== undefined) add((p) => `effective_at_ms < ${p}`, lt * 1000);
  if (lte !== undefined) add((p) => `effective_at_ms < ${p}`, (lte + 1) * 1000);
  list("type", query.types);
  list("actor_id", query.actorIds);
  list("resource_id", query.resourceIds);
  if (query.afterSeq !== null) add((p) => `seq < ${p}`, query.afterSeq);
  if (query.beforeSeq !== null) add((p) => `seq > ${p}`, query.beforeSeq);
  // Reading towards newer records (before=) takes the ones nearest the cursor first; the caller reverses them.
  const order = query.beforeSeq !== null ? "ASC" : "DESC";
  params.push(query.limit + 1);
  const sql = `SELECT ${AUDIT_COLUMNS} FROM audit_log${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY seq ${order} LIMIT ${param(params.length)}`;
  return { sql, params };
}

/** The page from rows read by listSql's query (limit + 1 of them at most). */
export function toPage(rows: AuditRow[], query: AuditQuery): AuditPage {
  const records = rows.slice(0, query.limit).map(toAuditRecord);
  if (query.beforeSeq !== null) records.reverse();
  return { records, hasMore: rows.length > query.limit };
}
