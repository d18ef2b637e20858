// A refused admission as the HTTP error a client sees, worded and headed like
// OpenAI's so the official SDKs react correctly. The openai SDK retries every
// 429 unless the response says `x-should-retry: false`, and sleeps for
// `retry-after-ms` (else `retry-after` seconds) before it does; so:
// - a per-minute limit: retry-after + retry-after-ms = the exact wait;
// - a spent budget or a request larger than the limit: x-should-retry: false
//   and no retry-after (waiting cannot help; retrying only burns requests);
// - a full queue: a short retry-after (a slot frees when any request ends).
import { ApiError } from "../errors.js";
import type { Rejection } from "./admission.js";
import { formatDuration } from "./formatDuration.js";
import type { RateLimitHeaders } from "./rateLimitHeaders.js";

const RATE_NAMES = { requests: "requests per min (RPM)", tokens: "tokens per min (TPM)" } as const;

export function rejectionError(tenantId: string, r: Rejection, rateHeaders: RateLimitHeaders, queueRetryAfterMs: number): ApiError {
  const noRetry = { ...rateHeaders, "x-should-retry": "false" };
  switch (r.kind) {
    case "lifetime":
      return new ApiError(
        "insufficient_quota",
        `You exceeded your lifetime token budget on tenant ${tenantId}: Limit ${r.limit}, Used ${r.used}, Requested ${r.requested}. Ask an administrator to raise the budget.`,
        null,
        null,
        { type: "insufficient_quota", headers: noRetry },
      );
    case "daily":
      return new ApiError(
        "insufficient_quota",
        `You exceeded your daily token quota on tenant ${tenantId}: Limit ${r.limit}, Used ${r.used}, Requested ${r.requested}. The quota resets at 00:00 UTC, in ${formatDuration(r.resetMs)}.`,
        null,
        null,
        { type: "insufficient_quota", headers: noRetry },
      );
    case "too_large":
      return new ApiError(
        "rate_limit_exceeded",
        `Request too large for ${RATE_NAMES[r.dimension]} on tenant ${tenantId}: Limit ${r.limit}, Requested ${r.requested}. The input or output tokens must be reduced in order to run successfully.`,
        null,
        null,
        { type: r.dimension, headers: noRetry },
      );
    case "rate":
      return new ApiError(
        "rate_limit_exceeded",
        `Rate limit reached for ${RATE_NAMES[r.dimension]} on tenant ${tenantId}: Limit ${r.limit}, Used ${r.used}, Requested ${r.requested}. Please try again in ${formatDuration(r.waitMs)}.`,
        null,
        Math.ceil(r.waitMs / 1000),
        { type: r.dimension, headers: { ...rateHeaders, ...retryHeaders(r.waitMs) } },
      );
    case "concurrent":
    case "queued": {
      const what = r.kind === "concurrent" ? "concurrent requests" : "queued requests";
      const counted = r.kind === "concurrent" ? "Running or queued" : "Queued";
      return new ApiError(
        "queue_full",
        `Too many ${what} on tenant ${tenantId}: Limit ${r.limit}, ${counted} ${r.current}. Please try again in ${formatDuration(queueRetryAfterMs)}.`,
        null,
        Math.ceil(queueRetryAfterMs / 1000),
        { headers: { ...rateHeaders, ...retryHeaders(queueRetryAfterMs) } },
      );
    }
  }
}

function retryHeaders(waitMs: number): Record<string, string> {
  return { "retry-after": String(Math.ceil(waitMs / 1000)), "retry-after-ms": String(Math.ceil(waitMs)) };
}
