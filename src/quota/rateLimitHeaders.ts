// OpenAI's six x-ratelimit-* headers, from the RPM and TPM buckets.
// An unlimited dimension sends none of its three headers: OpenAI has no way
// to spell "no limit", and an invented value (a huge number, "inf") would be
// taken literally by clients that pace themselves on these headers.
import type { TenantLimits } from "../tenants/types.js";
import { formatDuration } from "./formatDuration.js";
import { remainingOf, resetMsOf, type Bucket } from "./tokenBucket.js";

export type RateLimitHeaders = Record<string, string>;

/** Buckets must already be refilled to the time the headers describe. */
export function rateLimitHeaders(limits: Pick<TenantLimits, "requestsPerMinute" | "tokensPerMinute">, requests: Bucket, tokens: Bucket): RateLimitHeaders {
  const headers: RateLimitHeaders = {};
  const dims: ["requests" | "tokens", number | null, Bucket][] = [
    ["requests", limits.requestsPerMinute, requests],
    ["tokens", limits.tokensPerMinute, tokens],
  ];
  for (const [name, limit, bucket] of dims) {
    if (limit === null) continue;
    headers[`x-ratelimit-limit-${name}`] = String(limit);
    headers[`x-ratelimit-remaining-${name}`] = String(remainingOf(bucket, limit));
    headers[`x-ratelimit-reset-${name}`] = formatDuration(resetMsOf(bucket, limit));
  }
  return headers;
}
