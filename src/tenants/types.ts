// Tenants: who may call the API, how much, and with what share of the engine.
import type { TenantPolicy } from "../../engine/index.js";
// Plain data shared by the tenant store, the auth middleware, the quota
// ledger and the engine's fair scheduler. A limit of null means "no limit".

export interface TenantLimits {
  /** Requests started per minute (OpenAI's RPM). */
  requestsPerMinute: number | null;
  /** Prompt + completion tokens per minute (OpenAI's TPM). */
  tokensPerMinute: number | null;
  /** Requests running or waiting in the engine at once. */
  maxConcurrent: number | null;
  /** Requests waiting for a slot at once (beyond this: 429). */
  maxQueued: number | null;
  /** Prompt + completion tokens per UTC day. */
  tokensPerDay: number | null;
  /** Prompt + completion tokens over the tenant's lifetime. */
  lifetimeTokens: number | null;
  /** Upper bound on max_tokens; a request without max_tokens gets this value. */
  maxTokens: number | null;
  /** Model ids or aliases the tenant may use; null: all. */
  allowedModels: string[] | null;
}

export interface TenantScheduling {
  /** Share of engine steps when backlogged, relative to other tenants (> 0). */
  weight: number;
  /** Highest per-request `priority` the tenant may ask for (requests are capped to it). */
  maxPriority: number;
  /** Slots kept for this tenant alone (a guaranteed minimum). */
  reservedSlots: number;
  /** Most slots the tenant may hold at once; null: no cap. */
  maxSlots: number | null;
}

export interface Tenant {
  /** Stable id: [a-z0-9_-]{1,64}. */
  id: string;
  /**
   * Unique to this incarnation of the tenant (a nonce the store makes when the
   * tenant is created): a tenant deleted and created again under the same id
   * gets a new one. Absent: the id alone (single-tenant mode, tests).
   */
  incarnation?: string;
  limits: TenantLimits;
  scheduling: TenantScheduling;
}

export const DEFAULT_LIMITS: TenantLimits = {
  requestsPerMinute: null,
  tokensPerMinute: null,
  maxConcurrent: null,
  maxQueued: null,
  tokensPerDay: null,
  lifetimeTokens: null,
  maxTokens: null,
  allowedModels: null,
};

/** Whether any limit counts tokens (so a request's tokens must be estimated before it runs). */
export function hasTokenLimit(limits: TenantLimits): boolean {
  return limits.tokensPerMinute !== null || limits.tokensPerDay !== null || limits.lifetimeTokens !== null;
}

export const DEFAULT_SCHEDULING: TenantScheduling = { weight: 1, maxPriority: 0, reservedSlots: 0, maxSlots: null };

/** The tenant every request belongs to when no tenants are configured (single-tenant mode, no auth). */
export const ANONYMOUS_TENANT: Tenant = { id: "default", limits: DEFAULT_LIMITS, scheduling: DEFAULT_SCHEDULING };

/**
 * The name the engines know the tenant by (EngineRequest.tenant, policies,
 * KV slots and saved states): its id and incarnation, so cache ownership never
 * passes by name to a tenant re-created under a deleted one's id.
 */
export function engineTenant(t: Pick<Tenant, "id" | "incarnation">): string {
  return t.incarnation ? `${t.id}~${t.incarnation}` : t.id;
}

/** What the engine's fair scheduler needs of a tenant. */
export function tenantPolicy(t: Tenant): TenantPolicy {
  return { id: engineTenant(t), weight: t.scheduling.weight, reservedSlots: t.scheduling.reservedSlots, maxSlots: t.scheduling.maxSlots };
}
