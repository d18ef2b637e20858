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

/** What the engine's fair scheduler needs of a tenant. */
export function tenantPolicy(t: Tenant): TenantPolicy {
  return { id: t.id, weight: t.scheduling.weight, reservedSlots: t.scheduling.reservedSlots, maxSlots: t.scheduling.maxSlots };
}
