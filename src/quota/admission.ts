// Whether a tenant may start one more request: a pure decision over a
// snapshot of its counters. The ledger refills the buckets to "now" before
// asking, and charges only when the answer is null (a refused request costs
// nothing, as at OpenAI).
import type { TenantLimits } from "../tenants/types.js";
import { usedOf, waitMsFor, type Bucket } from "./tokenBucket.js";

export type RateDimension = "requests" | "tokens";

export interface UsageSnapshot {
  requests: Bucket;
  tokens: Bucket;
  running: number;
  queued: number;
  dayTokens: number;
  lifetimeTokens: number;
}

export type Rejection =
  | { kind: "lifetime"; limit: number; used: number; requested: number }
  | { kind: "daily"; limit: number; used: number; requested: number; resetMs: number }
  | { kind: "too_large"; dimension: RateDimension; limit: number; requested: number }
  | { kind: "rate"; dimension: RateDimension; limit: number; used: number; requested: number; waitMs: number }
  | { kind: "concurrent"; limit: number; current: number }
  | { kind: "queued"; limit: number; current: number };

/**
 * The first limit that has no room for a request of `estimatedTokens`, or
 * null when every limit has room ("room" includes exactly the amount left).
 *
 * Order: budgets first (retrying cannot help, so a client must not be told to
 * wait for a rate limit only to hit a spent budget afterwards), then requests
 * that can never fit, then the per-minute buckets (longer waits), then the
 * concurrency caps (which clear as soon as one request ends).
 */
export function decideAdmission(usage: UsageSnapshot, limits: TenantLimits, estimatedTokens: number, msUntilDayEnd: number): Rejection | null {
  const { lifetimeTokens: lifetime, tokensPerDay: daily } = limits;
  if (lifetime !== null && usage.lifetimeTokens + estimatedTokens > lifetime) {
    return { kind: "lifetime", limit: lifetime, used: usage.lifetimeTokens, requested: estimatedTokens };
  }
  if (daily !== null && usage.dayTokens + estimatedTokens > daily) {
    return { kind: "daily", limit: daily, used: usage.dayTokens, requested: estimatedTokens, resetMs: msUntilDayEnd };
  }
  const rates: [RateDimension, number | null, Bucket, number][] = [
    ["requests", limits.requestsPerMinute, usage.requests, 1],
    ["tokens", limits.tokensPerMinute, usage.tokens, estimatedTokens],
  ];
  for (const [dimension, limit, , requested] of rates) {
    if (limit !== null && requested > limit) return { kind: "too_large", dimension, limit, requested };
  }
  for (const [dimension, limit, bucket, requested] of rates) {
    if (limit === null) continue;
    const waitMs = waitMsFor(bucket, limit, requested);
    if (waitMs > 0) return { kind: "rate", dimension, limit, used: usedOf(bucket), requested, waitMs };
  }
  const inFlight = usage.running + usage.queued;
  if (limits.maxConcurrent !== null && inFlight + 1 > limits.maxConcurrent) {
    return { kind: "concurrent", limit: limits.maxConcurrent, current: inFlight };
  }
  if (limits.maxQueued !== null && usage.queued + 1 > limits.maxQueued) {
    return { kind: "queued", limit: limits.maxQueued, current: usage.queued };
  }
  return null;
}
