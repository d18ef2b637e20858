// The details of admin events: what changed, never a key or a key hash. Pure.
import type { TenantPatch } from "../tenants/config.js";
import type { ApiKeyRecord, TenantRecord } from "../tenants/store.js";
import type { JsonValue } from "./record.js";

type JsonObject = { [key: string]: JsonValue };

/** A value as JSON (undefined fields dropped), for details built from typed records. */
function json(value: unknown): JsonValue {
  return JSON.parse(JSON.stringify(value ?? null)) as JsonValue;
}

export function tenantAuditDetails(r: TenantRecord): JsonObject {
  return { limits: json(r.tenant.limits), scheduling: json(r.tenant.scheduling) };
}

export function keyAuditDetails(k: ApiKeyRecord): JsonObject {
  return { tenant_id: k.tenantId, prefix: k.prefix, name: k.name, created_at: k.createdAtSeconds, revoked_at: k.revokedAtSeconds };
}

/**
 * A tenant update: the fields that changed, before and after (limits.* and
 * scheduling.* compared one by one), and the patch as sent.
 */
export function tenantChange(before: TenantRecord | null, after: TenantRecord, patch: TenantPatch): JsonObject {
  const was = before ? tenantAuditDetails(before) : {};
  const now = tenantAuditDetails(after);
  const changedBefore: JsonObject = {};
  const changedAfter: JsonObject = {};
  for (const group of ["limits", "scheduling"] as const) {
    const a = (was[group] ?? {}) as JsonObject;
    const b = now[group] as JsonObject;
    for (const field of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (JSON.stringify(a[field] ?? null) === JSON.stringify(b[field] ?? null)) continue;
      ((changedBefore[group] ??= {}) as JsonObject)[field] = a[field] ?? null;
      ((changedAfter[group] ??= {}) as JsonObject)[field] = b[field] ?? null;
    }
  }
  return { changes_requested: json(patch), before: changedBefore, after: changedAfter };
}
