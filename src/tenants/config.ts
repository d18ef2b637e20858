// Tenant definitions: the schemas shared by the tenants file (--tenants) and the
// admin API, the merge rule for partial updates, and the file loader. Keys are
// camelCase as in types.ts; every limit is optional (absent or null: no limit)
// and scheduling falls back to DEFAULT_SCHEDULING field by field.
import fs from "node:fs";
import YAML from "yaml";
import { z } from "zod";
import { ConfigError } from "../config.js";
import { normalizeKeyHash } from "./keys.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits, type TenantScheduling } from "./types.js";

export const TENANT_ID_PATTERN = /^[a-z0-9_-]{1,64}$/;

export const tenantIdSchema = z.string().regex(TENANT_ID_PATTERN, "must be 1 to 64 characters of a-z, 0-9, '_' or '-'");

const count = (min: number) => z.number().int("must be an integer").min(min).max(Number.MAX_SAFE_INTEGER);

/** Every limit optional; present keys may be null (no limit). Unknown keys are refused (a typo must not silently mean "unlimited"). */
export const limitsPatchSchema = z
  .object({
    requestsPerMinute: count(0).nullable(),
    tokensPerMinute: count(0).nullable(),
    maxConcurrent: count(0).nullable(),
    maxQueued: count(0).nullable(),
    tokensPerDay: count(0).nullable(),
    lifetimeTokens: count(0).nullable(),
    maxTokens: count(1).nullable(),
    allowedModels: z.array(z.string().min(1)).nullable(),
  })
  .partial()
  .strict();

export const schedulingPatchSchema = z
  .object({
    weight: z.number().positive().max(1_000_000).refine(Number.isFinite, "must be finite"),
    maxPriority: z.number().int("must be an integer").min(-1000).max(1000),
    reservedSlots: count(0),
    maxSlots: count(1).nullable(),
  })
  .partial()
  .strict();

export type LimitsPatch = z.infer<typeof limitsPatchSchema>;
export type SchedulingPatch = z.infer<typeof schedulingPatchSchema>;
export interface TenantPatch {
  limits?: LimitsPatch | undefined;
  scheduling?: SchedulingPatch | undefined;
}

/** Applies a partial update: keys present in the patch replace (null clears a limit), absent keys keep their value. */
export function mergeTenant(current: Tenant, patch: TenantPatch): Tenant {
  return {
    id: current.id,
    limits: { ...current.limits, ...definedOnly(patch.limits ?? {}) } as TenantLimits,
    scheduling: { ...current.scheduling, ...definedOnly(patch.scheduling ?? {}) } as TenantScheduling,
  };
}

/** A tenant built from defaults and a patch (creation through the file or the admin API). */
export function newTenant(id: string, patch: TenantPatch): Tenant {
  return mergeTenant({ id, limits: DEFAULT_LIMITS, scheduling: DEFAULT_SCHEDULING }, patch);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Rules across fields that a per-field schema cannot state. Returns the path of
 * the offending field and why, or null when the tenant is consistent.
 */
export function tenantProblem(t: Tenant): { path: string; message: string } | null {
  const s = t.scheduling;
  if (s.maxSlots !== null && s.reservedSlots > s.maxSlots) {
    return { path: "scheduling.reservedSlots", message: `must not exceed scheduling.maxSlots (${s.maxSlots})` };
  }
  return null;
}

/** One tenant as the file defines it: the tenant and the hashes of its keys. */
export interface TenantDefinition {
  tenant: Tenant;
  /** Normalized "sha256:<64 hex>" hashes. */
  keyHashes: string[];
}

const keyHashSchema = z.string().transform((value, ctx) => {
  const hash = normalizeKeyHash(value);
  if (hash === null) {
    ctx.addIssue({
      code: "custom",
      message:
        "must be the key's hash, 'sha256:' followed by 64 hex digits (for example: printf %s \"$KEY\" | sha256sum); plaintext keys are never accepted in the file",
    });
    return z.NEVER;
  }
  return hash;
});

const fileSchema = z
  .object({
    tenants: z.array(
      z
        .object({
          id: tenantIdSchema,
          limits: limitsPatchSchema.optional(),
          scheduling: schedulingPatchSchema.optional(),
          keys: z.array(keyHashSchema).optional(),
        })
        .strict(),
    ),
  })
  .strict();

/** Renders a zod path as tenants[0].limits.maxTokens. */
function pathName(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || "(top level)";
}

/** Validates the parsed contents of a tenants file; `file` only names it in errors. */
export function parseTenantsConfig(value: unknown, file: string): TenantDefinition[] {
  const result = fileSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.code === "unrecognized_keys" ? pathName([...issue.path, issue.keys[0]!]) : pathName(issue.path);
    const why = issue.code === "unrecognized_keys" ? "unknown field" : issue.message;
    throw new ConfigError(`tenants file ${file}: ${where}: ${why}`);
  }
  const seenIds = new Map<string, number>();
  const keyOwner = new Map<string, string>();
  return result.data.tenants.map((entry, i) => {
    const previous = seenIds.get(entry.id);
    if (previous !== undefined) {
      throw new ConfigError(`tenants file ${file}: tenants[${i}].id: '${entry.id}' is already defined by tenants[${previous}]`);
    }
    seenIds.set(entry.id, i);
    const tenant = newTenant(entry.id, entry);
    const problem = tenantProblem(tenant);
    if (problem) throw new ConfigError(`tenants file ${file}: tenants[${i}].${problem.path}: ${problem.message}`);
    const keyHashes = [...new Set(entry.keys ?? [])];
    for (const [k, hash] of (entry.keys ?? []).entries()) {
      const owner = keyOwner.get(hash);
      if (owner !== undefined && owner !== entry.id) {
        throw new ConfigError(`tenants file ${file}: tenants[${i}].keys[${k}]: the same key is also listed for tenant '${owner}'`);
      }
      keyOwner.set(hash, entry.id);
    }
    return { tenant, keyHashes };
  });
}

/** Reads and validates a tenants file: JSON when it ends in .json, YAML otherwise (as --config). */
export function loadTenantsFile(file: string): TenantDefinition[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read tenants file ${file}: ${(err as Error).message}`);
  }
  const json = /\.json$/i.test(file);
  let parsed: unknown;
  try {
    parsed = json ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`tenants file ${file} is not valid ${json ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
  return parseTenantsConfig(parsed, file);
}
