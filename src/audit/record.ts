// The audit log's record, its event types and its hash chain: pure. Every
// record carries the hash of the one before it, so changing, removing or
// reordering a stored record breaks the chain at that record, which
// `llamux audit verify` finds (verifyChain below).
//
// To audit a new kind of action (model load, unload, switch: they do not exist
// yet), add its name to AUDIT_EVENT_TYPES and call AuditLog.record with it:
// stores, filters, GET /admin/audit and verify need no change.
import { createHash } from "node:crypto";

export const AUDIT_EVENT_TYPES = [
  "tenant.created",
  "tenant.updated",
  "tenant.deleted",
  "api_key.created",
  "api_key.rotated",
  "api_key.revoked",
  // A refused API key, admin key or metrics token (rate-limited per source address: see refusals.ts).
  "authentication.failed",
  // How many refusals a window did not record one by one.
  "authentication.suppressed",
] as const;
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

export function isAuditEventType(value: string): value is AuditEventType {
  return (AUDIT_EVENT_TYPES as readonly string[]).includes(value);
}

/** JSON values only: what a record's details may hold (no undefined, no non-finite numbers). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface AuditActor {
  /** admin_key: an admin request; anonymous: a caller whose credentials were refused. */
  type: "admin_key" | "anonymous";
  /**
   * What actor_ids[] matches: the admin key's fingerprint ("sha256:ab12cd34…",
   * never the key), or for anonymous callers their address ("ip:127.0.0.1").
   */
  id: string;
  /** The remote address of the connection; null when unknown (a summary over several). */
  ipAddress: string | null;
}

/** What a caller appends; the store gives it its place in the chain. */
export interface AuditEntry {
  type: AuditEventType;
  /** Milliseconds since the epoch. */
  effectiveAtMs: number;
  actor: AuditActor;
  /** The tenant or key acted upon (resource_ids[] matches it); null for none. */
  resourceId: string | null;
  /** The x-request-id of the request that did it; null for records no request made (summaries). */
  requestId: string | null;
  /** The change itself (before/after of changed fields, never a key or a key hash). */
  details: { [key: string]: JsonValue };
}

export interface AuditRecord extends AuditEntry {
  /** 1, 2, 3…: gapless, the chain's order. */
  seq: number;
  /** The previous record's hash; GENESIS_HASH for the first. */
  prevHash: string;
  hash: string;
}

export const GENESIS_HASH = "0".repeat(64);
const ID_PREFIX = "audit_log-";

/** The public id of a record: "audit_log-<seq>". */
export function auditId(seq: number): string {
  return `${ID_PREFIX}${seq}`;
}

/** The seq of an id made by auditId; null when `id` is not one. */
export function seqOfAuditId(id: string): number | null {
  if (!id.startsWith(ID_PREFIX)) return null;
  const digits = id.slice(ID_PREFIX.length);
  if (!/^[1-9][0-9]{0,15}$/.test(digits)) return null;
  const seq = Number(digits);
  return Number.isSafeInteger(seq) ? seq : null;
}

/**
 * JSON with object keys sorted at every depth and no whitespace: the same
 * value always gives the same text, whatever order its keys were built in or
 * a database gave them back in.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("a non-finite number cannot be audited");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value)
    .filter((k) => value[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`).join(",")}}`;
}

/** Everything a record's hash covers, in canonical form (the hash itself excluded). */
export function canonicalRecord(seq: number, entry: AuditEntry): string {
  return canonicalJson({
    seq,
    type: entry.type,
    effective_at_ms: entry.effectiveAtMs,
    actor: { type: entry.actor.type, id: entry.actor.id, ip_address: entry.actor.ipAddress },
    resource_id: entry.resourceId,
    request_id: entry.requestId,
    details: entry.details,
  });
}

/** sha256 over the previous hash, a newline and the record's canonical form, as hex. */
export function chainHash(prevHash: string, seq: number, entry: AuditEntry): string {
  return createHash("sha256").update(prevHash).update("\n").update(canonicalRecord(seq, entry)).digest("hex");
}

/** The record that follows `head` (null: the chain is empty). */
export function nextRecord(head: { seq: number; hash: string } | null, entry: AuditEntry): AuditRecord {
  const seq = (head?.seq ?? 0) + 1;
  const prevHash = head?.hash ?? GENESIS_HASH;
  return { ...entry, seq, prevHash, hash: chainHash(prevHash, seq, entry) };
}

export type ChainProblem = { seq: number; id: string; reason: string };

/**
 * Checks records in seq order, carrying the state from one batch to the next.
 * The first problem found is kept; later batches need not be read.
 */
export class ChainVerifier {
  private expectedSeq = 1;
  private prevHash = GENESIS_HASH;
  problem: ChainProblem | null = null;
  count = 0;

  /** False once a problem is found. */
  check(records: readonly AuditRecord[]): boolean {
    for (const r of records) {
      if (this.problem) return false;
      const at = (reason: string) => (this.problem = { seq: r.seq, id: auditId(r.seq), reason });
      if (r.seq !== this.expectedSeq) at(`expected record ${auditId(this.expectedSeq)} here, found ${auditId(r.seq)}: records are missing`);
      else if (r.prevHash !== this.prevHash) at("its previous-hash does not match the record before it");
      else if (chainHash(r.prevHash, r.seq, r) !== r.hash) at("its content does not match its hash: it was changed after it was written");
      else {
        this.expectedSeq++;
        this.prevHash = r.hash;
        this.count++;
      }
    }
    return this.problem === null;
  }

  /** The last good record's hash: what an operator can note down to detect a cut tail later. */
  get headHash(): string {
    return this.prevHash;
  }
}
