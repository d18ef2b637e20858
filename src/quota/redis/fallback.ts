// What a replica does about quotas while the shared Redis cannot be reached
// (--redis-fallback): "refuse" answers a retryable 503, "local" enforces each
// limit as this replica's share of it, so that N replicas deciding alone
// still admit a bounded amount. Pure functions; RedisQuota applies them.
import { ApiError } from "../../errors.js";
import type { TenantLimits } from "../../tenants/types.js";

export type RedisFallback = "refuse" | "local";
export const REDIS_FALLBACKS = ["local", "refuse"] as const satisfies readonly RedisFallback[];

/** The mode a replica's quota is in: the shared books, or its fallback while they are out of reach. */
export type QuotaMode = "redis" | RedisFallback;

/** Tokens a tenant had used when the replica started deciding alone. */
export interface UsedTokens {
  dayTokens: number;
  lifetimeTokens: number;
}

/**
 * One replica's share of a tenant's limits when `replicas` replicas decide
 * alone: each rate and cap is ceil(limit ÷ replicas), so the service as a
 * whole admits at most limit + replicas − 1 (rounding up keeps a small
 * tenant served: a concurrency of 1 on 3 replicas would otherwise be 0
 * everywhere); each budget is what was used plus ceil(what was left ÷
 * replicas). Limits that are not quotas (maxTokens, models) are unchanged.
 */
export function replicaShare(limits: TenantLimits, replicas: number, used: UsedTokens): TenantLimits {
  if (!Number.isSafeInteger(replicas) || replicas < 1) throw new RangeError(`replicas must be an integer ≥ 1, got ${replicas}`);
  const part = (limit: number | null) => (limit === null ? null : Math.ceil(limit / replicas));
  const budget = (limit: number | null, spent: number) => (limit === null ? null : spent + Math.ceil(Math.max(0, limit - spent) / replicas));
  return {
    ...limits,
    requestsPerMinute: part(limits.requestsPerMinute),
    tokensPerMinute: part(limits.tokensPerMinute),
    maxConcurrent: part(limits.maxConcurrent),
    maxQueued: part(limits.maxQueued),
    tokensPerDay: budget(limits.tokensPerDay, used.dayTokens),
    lifetimeTokens: budget(limits.lifetimeTokens, used.lifetimeTokens),
  };
}

/** The retryable 503 a request gets when no quota decision can be made (Redis down under "refuse", or no replica count known). */
export function quotaUnavailable(why: string, retryAfterMs = 1000): ApiError {
  return new ApiError(
    "quota_unavailable",
    `Rate limits cannot be checked right now (${why}); the request was not run. Please try again in ${Math.ceil(retryAfterMs / 1000)}s.`,
    null,
    Math.ceil(retryAfterMs / 1000),
    {
      headers: { "retry-after-ms": String(retryAfterMs) },
    },
  );
}
