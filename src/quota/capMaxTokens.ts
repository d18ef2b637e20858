// The tenant's max_tokens cap, applied the way OpenAI-compatible gateways do:
// a request above the cap is clamped rather than refused (the client asked for
// "at most N"; giving it at most the cap is still a valid answer, and refusing
// would break clients that always send a large max_tokens), and a request
// without max_tokens gets the cap, so no tenant generates unbounded output.
import type { TenantLimits } from "../tenants/types.js";

/** The max_tokens to give the engine: `requested` clamped to `limits.maxTokens`; null only when both are null. */
export function capMaxTokens(limits: Pick<TenantLimits, "maxTokens">, requested: number): number;
export function capMaxTokens(limits: Pick<TenantLimits, "maxTokens">, requested: number | null): number | null;
export function capMaxTokens(limits: Pick<TenantLimits, "maxTokens">, requested: number | null): number | null {
  const cap = limits.maxTokens;
  if (cap === null) return requested;
  if (requested === null) return cap;
  return Math.min(requested, cap);
}
