// GET /admin/audit's query string, in the shape of OpenAI's
// GET /organization/audit_logs: effective_at[gt|gte|lt|lte], event_types[],
// actor_ids[], resource_ids[], limit, after, before. Parsed from the raw
// query string (not Express's parser, whose bracket handling varies), each
// problem a 400 naming the parameter. Pure.
import { ApiError } from "../errors.js";
import type { AuditQuery } from "./auditStore.js";
import { AUDIT_EVENT_TYPES, isAuditEventType, seqOfAuditId, type AuditEventType } from "./record.js";

export const DEFAULT_AUDIT_LIMIT = 20;
export const MAX_AUDIT_LIMIT = 100;
/** Values one list filter may carry (each is a bound parameter of one query). */
export const MAX_FILTER_VALUES = 100;

const RANGE_OPS = ["gt", "gte", "lt", "lte"] as const;
const LISTS = { "event_types[]": "types", "actor_ids[]": "actorIds", "resource_ids[]": "resourceIds" } as const;
const UNSUPPORTED: Record<string, string> = {
  "actor_emails[]": "llamux's actors are admin keys and source addresses, which have no email: filter with actor_ids[]",
  "project_ids[]": "llamux has tenants, not projects: filter with resource_ids[]",
  tenant_only: "llamux has no tenant-scoped events",
};

/** `name` with a trailing "[]" whether or not the client wrote it (both forms are common). */
function listName(name: string): string {
  return name.endsWith("[]") ? name : `${name}[]`;
}

function integer(name: string, value: string, min: number, max: number): number {
  if (!/^-?[0-9]+$/.test(value)) throw new ApiError("invalid_type", `Invalid '${name}': expected an integer, got '${value.slice(0, 64)}'.`, name);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new ApiError("invalid_value", `Invalid '${name}': ${value.slice(0, 64)} is not between ${min} and ${max}.`, name);
  return n;
}

function cursor(name: string, value: string): number {
  const seq = seqOfAuditId(value);
  if (seq === null) throw new ApiError("invalid_value", `Invalid '${name}': '${value.slice(0, 64)}' is not an audit log id (audit_log-<number>).`, name);
  return seq;
}

export function parseAuditQuery(search: string): AuditQuery {
  const query: AuditQuery = { effectiveAt: {}, types: [], actorIds: [], resourceIds: [], limit: DEFAULT_AUDIT_LIMIT, afterSeq: null, beforeSeq: null };
  const seen = new Set<string>();
  for (const [rawName, value] of new URLSearchParams(search)) {
    const range = /^effective_at\[(gt|gte|lt|lte)\]$/.exec(rawName);
    const name = range ? rawName : rawName in LISTS || `${rawName}[]` in LISTS || `${rawName}[]` in UNSUPPORTED ? listName(rawName) : rawName;
    if (name in UNSUPPORTED) throw new ApiError("unsupported_parameter", `Unsupported parameter: '${name}': ${UNSUPPORTED[name]}.`, name);
    if (name in LISTS) {
      const list = query[LISTS[name as keyof typeof LISTS]];
      if (list.length >= MAX_FILTER_VALUES) throw new ApiError("invalid_value", `Invalid '${name}': at most ${MAX_FILTER_VALUES} values.`, name);
      if (value === "") throw new ApiError("invalid_value", `Invalid '${name}': an empty value.`, name);
      if (name === "event_types[]" && !isAuditEventType(value)) {
        throw new ApiError(
          "invalid_value",
          `Invalid '${name}': '${value.slice(0, 64)}' is not an audit event type (one of ${AUDIT_EVENT_TYPES.join(", ")}).`,
          name,
        );
      }
      (list as string[]).push(value);
      continue;
    }
    if (seen.has(name)) throw new ApiError("invalid_value", `Invalid '${name}': given more than once.`, name);
    seen.add(name);
    if (range) query.effectiveAt[range[1] as (typeof RANGE_OPS)[number]] = integer(name, value, 0, Number.MAX_SAFE_INTEGER / 1000 - 1);
    else if (name === "limit") query.limit = integer(name, value, 1, MAX_AUDIT_LIMIT);
    else if (name === "after") query.afterSeq = cursor(name, value);
    else if (name === "before") query.beforeSeq = cursor(name, value);
    else throw new ApiError("unknown_parameter", `Unknown parameter: '${name.slice(0, 64)}'.`, name.slice(0, 64));
  }
  if (query.afterSeq !== null && query.beforeSeq !== null)
    throw new ApiError("invalid_value", "Invalid 'before': 'after' and 'before' cannot be combined; page in one direction.", "before");
  query.types = [...new Set(query.types)] as AuditEventType[];
  return query;
}
