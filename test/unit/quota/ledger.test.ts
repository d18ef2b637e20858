// Per-tenant quotas (src/quota/ledger.ts) on a fake clock: what a client sees
// in x-ratelimit-* headers and in 429s as it uses up and regains its limits.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { QuotaLedger, type Reservation } from "../../../src/quota/ledger.js";
import { MemoryUsageStore } from "../../../src/quota/usageStore.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits } from "../../../src/tenants/types.js";

const NOON = Date.UTC(2025, 0, 15, 12, 0, 0);
let nowMs = NOON;
const clock = { now: () => nowMs };
beforeEach(() => {
  nowMs = NOON;
});

function tenant(limits: Partial<TenantLimits>, id = "acme"): Tenant {
  return { id, limits: { ...DEFAULT_LIMITS, ...limits }, scheduling: DEFAULT_SCHEDULING };
}

function admit(ledger: QuotaLedger, t: Tenant, estimatedTokens: number): { reservation: Reservation; headers: Record<string, string> } {
  const r = ledger.reserve(t, { estimatedTokens });
  if (!r.ok) assert.fail(`expected admission, got ${r.error.code}: ${r.error.message}`);
  return r;
}

function refuse(ledger: QuotaLedger, t: Tenant, estimatedTokens: number): ApiError {
  const r = ledger.reserve(t, { estimatedTokens });
  if (r.ok) assert.fail(`expected a refusal, got admission #${r.reservation.id}`);
  assert.ok(r.error instanceof ApiError);
  assert.equal(r.error.status, 429);
  return r.error;
}

function rateHeaders(h: Record<string, string>, dim: "requests" | "tokens"): [string?, string?, string?] {
  return [h[`x-ratelimit-limit-${dim}`], h[`x-ratelimit-remaining-${dim}`], h[`x-ratelimit-reset-${dim}`]];
}

describe("x-ratelimit-* headers", () => {
  test("count down as requests are admitted and refill continuously", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ requestsPerMinute: 10, tokensPerMinute: 1000 });
    assert.deepEqual(ledger.headers(acme), {
      "x-ratelimit-limit-requests": "10",
      "x-ratelimit-remaining-requests": "10",
      "x-ratelimit-reset-requests": "0s",
      "x-ratelimit-limit-tokens": "1000",
      "x-ratelimit-remaining-tokens": "1000",
      "x-ratelimit-reset-tokens": "0s",
    });

    const first = admit(ledger, acme, 100).headers;
    assert.deepEqual(rateHeaders(first, "requests"), ["10", "9", "6s"]);
    assert.deepEqual(rateHeaders(first, "tokens"), ["1000", "900", "6s"]);

    const second = admit(ledger, acme, 300).headers;
    assert.deepEqual(rateHeaders(second, "requests"), ["10", "8", "12s"]);
    assert.deepEqual(rateHeaders(second, "tokens"), ["1000", "600", "24s"]);

    nowMs += 3000; // refills 0.5 request and 50 tokens
    const later = ledger.headers(acme);
    assert.deepEqual(rateHeaders(later, "requests"), ["10", "8", "9s"], "remaining is floor(8.5)");
    assert.deepEqual(rateHeaders(later, "tokens"), ["1000", "650", "21s"]);

    nowMs += 21_000;
    assert.deepEqual(rateHeaders(ledger.headers(acme), "tokens"), ["1000", "1000", "0s"]);
    assert.deepEqual(rateHeaders(ledger.headers(acme), "requests"), ["10", "10", "0s"]);
  });

  test("long resets are written in minutes", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerMinute: 100 });
    assert.equal(admit(ledger, acme, 100).headers["x-ratelimit-reset-tokens"], "1m0s");
    nowMs += 30_000;
    assert.equal(ledger.headers(acme)["x-ratelimit-reset-tokens"], "30s");
  });

  test("an unlimited dimension sends none of its headers", () => {
    const ledger = new QuotaLedger(clock);
    const onlyTpm = tenant({ tokensPerMinute: 500 });
    assert.deepEqual(Object.keys(admit(ledger, onlyTpm, 10).headers).sort(), [
      "x-ratelimit-limit-tokens",
      "x-ratelimit-remaining-tokens",
      "x-ratelimit-reset-tokens",
    ]);
    assert.deepEqual(admit(ledger, tenant({}, "free"), 10).headers, {});
  });
});

describe("requests per minute", () => {
  test("N requests pass, N+1 is refused with type requests and the exact wait", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ requestsPerMinute: 10 });
    for (let i = 0; i < 10; i++) admit(ledger, acme, 5);
    const err = refuse(ledger, acme, 5);
    assert.equal(err.code, "rate_limit_exceeded");
    assert.equal(err.type, "requests");
    assert.equal(
      err.message,
      "Rate limit reached for requests per min (RPM) on tenant acme: Limit 10, Used 10, Requested 1. Please try again in 6s.",
    );
    assert.equal(err.retryAfterSeconds, 6);
    assert.equal(err.headers["retry-after"], "6");
    assert.equal(err.headers["retry-after-ms"], "6000");
    assert.equal(err.headers["x-ratelimit-remaining-requests"], "0");
    assert.equal(err.headers["x-ratelimit-reset-requests"], "1m0s");
    assert.equal(err.headers["x-should-retry"], undefined, "a rate limit is worth retrying");
  });

  test("the wait counts down, a refused request costs nothing, and the request passes once the wait is over", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ requestsPerMinute: 10 });
    for (let i = 0; i < 10; i++) admit(ledger, acme, 0);
    nowMs += 5999;
    const err = refuse(ledger, acme, 0);
    assert.equal(err.headers["retry-after-ms"], "1");
    assert.equal(err.headers["retry-after"], "1");
    nowMs += 1;
    const h = admit(ledger, acme, 0).headers;
    assert.equal(h["x-ratelimit-remaining-requests"], "0");
    refuse(ledger, acme, 0);
  });
});

describe("tokens per minute", () => {
  test("a request needing exactly the remaining tokens passes; one more token is refused with type tokens", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerMinute: 1000 });
    admit(ledger, acme, 600);
    const err = refuse(ledger, acme, 401);
    assert.equal(err.code, "rate_limit_exceeded");
    assert.equal(err.type, "tokens");
    assert.equal(
      err.message,
      "Rate limit reached for tokens per min (TPM) on tenant acme: Limit 1000, Used 600, Requested 401. Please try again in 60ms.",
    );
    assert.equal(err.headers["retry-after-ms"], "60", "1 token at 1000/min");
    assert.equal(err.headers["retry-after"], "1", "seconds, rounded up");
    assert.equal(err.retryAfterSeconds, 1);
    assert.equal(err.headers["x-ratelimit-remaining-tokens"], "400");
    admit(ledger, acme, 400);
    const full = refuse(ledger, acme, 1);
    assert.equal(full.headers["x-ratelimit-remaining-tokens"], "0");
    assert.equal(full.headers["retry-after-ms"], "60");
  });

  test("a request larger than the limit is told not to retry", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerMinute: 1000 });
    const err = refuse(ledger, acme, 1001);
    assert.equal(err.code, "rate_limit_exceeded");
    assert.equal(err.type, "tokens");
    assert.match(err.message, /^Request too large for tokens per min \(TPM\) on tenant acme: Limit 1000, Requested 1001\./);
    assert.equal(err.headers["x-should-retry"], "false");
    assert.equal(err.retryAfterSeconds, null);
    assert.equal(err.headers["retry-after"], undefined);
    assert.equal(err.headers["retry-after-ms"], undefined);
    admit(ledger, acme, 1000);
  });

  test("settling below the estimate refunds the difference and makes room again", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerMinute: 1000 });
    const { reservation } = admit(ledger, acme, 1000);
    refuse(ledger, acme, 1);
    ledger.settle(reservation, 200);
    assert.equal(ledger.headers(acme)["x-ratelimit-remaining-tokens"], "800");
    ledger.settle(reservation, 200); // idempotent: no second refund
    assert.equal(ledger.headers(acme)["x-ratelimit-remaining-tokens"], "800");
    admit(ledger, acme, 800);
    refuse(ledger, acme, 1);
  });

  test("settling above the estimate charges the extra, past empty", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerMinute: 1000 });
    const { reservation } = admit(ledger, acme, 100);
    ledger.settle(reservation, 1500);
    const h = ledger.headers(acme);
    assert.equal(h["x-ratelimit-remaining-tokens"], "0");
    assert.equal(h["x-ratelimit-reset-tokens"], "1m30s", "1500 tokens at 1000/min");
    const err = refuse(ledger, acme, 1);
    assert.match(err.message, /Used 1500, Requested 1\. Please try again in 30\.06s\./);
    assert.equal(err.headers["retry-after-ms"], "30060");
    assert.equal(err.headers["retry-after"], "31");
    nowMs += 30_060;
    admit(ledger, acme, 1);
  });
});

describe("daily and lifetime budgets", () => {
  test("a spent daily budget is insufficient_quota, with x-should-retry false and no retry-after", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerDay: 1000, tokensPerMinute: 10_000 });
    ledger.settle(admit(ledger, acme, 700).reservation, 600);
    const err = refuse(ledger, acme, 401);
    assert.equal(err.code, "insufficient_quota");
    assert.equal(err.type, "insufficient_quota");
    assert.equal(err.retryAfterSeconds, null);
    assert.equal(err.headers["x-should-retry"], "false");
    assert.equal(err.headers["retry-after"], undefined);
    assert.equal(err.headers["retry-after-ms"], undefined);
    assert.equal(err.headers["x-ratelimit-limit-tokens"], "10000", "rate headers still describe the TPM bucket");
    assert.equal(
      err.message,
      "You exceeded your daily token quota on tenant acme: Limit 1000, Used 600, Requested 401. The quota resets at 00:00 UTC, in 12h0m0s.",
    );
    admit(ledger, acme, 400);
    refuse(ledger, acme, 1);
  });

  test("a spent budget is reported before a rate limit, so the client does not wait in vain", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ tokensPerDay: 100, requestsPerMinute: 1 });
    admit(ledger, acme, 100);
    assert.equal(refuse(ledger, acme, 1).code, "insufficient_quota");
  });

  test("the day rolls over at 00:00 UTC", () => {
    nowMs = Date.UTC(2025, 0, 15, 23, 59, 59, 0);
    const store = new MemoryUsageStore();
    const ledger = new QuotaLedger({ ...clock, store });
    const acme = tenant({ tokensPerDay: 1000 });
    ledger.settle(admit(ledger, acme, 1000).reservation, 1000);
    const late = admit(ledger, tenant({ tokensPerDay: 2000 }), 500).reservation; // in flight across midnight
    nowMs += 999;
    assert.match(refuse(ledger, acme, 1).message, /in 1ms\.$/);
    nowMs += 1;
    assert.equal(ledger.usage("acme")?.dayTokens, 0);
    assert.equal(ledger.usage("acme")?.day, "2025-01-16");
    const fresh = admit(ledger, acme, 300).reservation;
    ledger.settle(late, 100); // charged to the 15th, where it was admitted
    assert.equal(ledger.usage("acme")?.dayTokens, 300, "yesterday's request does not touch today's count");
    assert.equal(ledger.usage("acme")?.lifetimeTokens, 1400);
    ledger.settle(fresh, 250);
    assert.deepEqual(store.load().get("acme"), { day: "2025-01-16", dayTokens: 250, lifetimeTokens: 1350 });
  });

  test("the lifetime budget does not roll over", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ lifetimeTokens: 1000, tokensPerDay: 800 });
    ledger.settle(admit(ledger, acme, 700).reservation, 700);
    nowMs += 86_400_000;
    const err = refuse(ledger, acme, 301);
    assert.equal(err.code, "insufficient_quota");
    assert.equal(err.headers["x-should-retry"], "false");
    assert.equal(err.retryAfterSeconds, null);
    assert.match(err.message, /^You exceeded your lifetime token budget on tenant acme: Limit 1000, Used 700, Requested 301\./);
    admit(ledger, acme, 300);
  });
});

describe("concurrency and queue caps", () => {
  test("queued and running requests are capped; a slot frees when a request ends", () => {
    const ledger = new QuotaLedger(clock);
    const acme = tenant({ maxConcurrent: 2, maxQueued: 1 });
    const a = admit(ledger, acme, 10).reservation;
    const queued = refuse(ledger, acme, 10);
    assert.equal(queued.code, "queue_full");
    assert.equal(queued.type, "rate_limit_error");
    assert.equal(queued.message, "Too many queued requests on tenant acme: Limit 1, Queued 1. Please try again in 1s.");
    assert.equal(queued.retryAfterSeconds, 1);
    assert.equal(queued.headers["retry-after-ms"], "1000");

    ledger.started(a);
    ledger.started(a); // idempotent
    assert.deepEqual(pickCounts(ledger), { running: 1, queued: 0 });
    const b = admit(ledger, acme, 10).reservation;
    const concurrent = refuse(ledger, acme, 10);
    assert.equal(concurrent.code, "queue_full");
    assert.equal(concurrent.message, "Too many concurrent requests on tenant acme: Limit 2, Running or queued 2. Please try again in 1s.");
    assert.equal(concurrent.headers["retry-after"], "1");

    ledger.settle(a, 10);
    ledger.settle(a, 10); // idempotent
    assert.deepEqual(pickCounts(ledger), { running: 0, queued: 1 });
    ledger.started(b);
    admit(ledger, acme, 10);
    assert.deepEqual(pickCounts(ledger), { running: 1, queued: 1 });
  });

  test("the wait suggested for a full queue is configurable", () => {
    const ledger = new QuotaLedger({ ...clock, queueRetryAfterMs: 250 });
    const acme = tenant({ maxConcurrent: 1 });
    admit(ledger, acme, 1);
    const err = refuse(ledger, acme, 1);
    assert.equal(err.headers["retry-after-ms"], "250");
    assert.equal(err.headers["retry-after"], "1");
  });
});

describe("cancel", () => {
  test("refunds the request unit and every token of a request that never ran, once", () => {
    const store = new MemoryUsageStore();
    const ledger = new QuotaLedger({ ...clock, store });
    const acme = tenant({ requestsPerMinute: 2, tokensPerMinute: 100, tokensPerDay: 100, lifetimeTokens: 100, maxConcurrent: 2 });
    const a = admit(ledger, acme, 50).reservation;
    admit(ledger, acme, 50);
    refuse(ledger, acme, 0);
    ledger.cancel(a);
    ledger.cancel(a);
    ledger.settle(a, 50); // after cancel: a no-op
    const h = ledger.headers(acme);
    assert.equal(h["x-ratelimit-remaining-requests"], "1");
    assert.equal(h["x-ratelimit-remaining-tokens"], "50");
    assert.deepEqual(ledger.usage("acme"), { day: "2025-01-15", dayTokens: 50, lifetimeTokens: 50, running: 0, queued: 1 });
    assert.equal(store.load().size, 0, "nothing stored for a request that never ran");
    admit(ledger, acme, 50);
  });
});

describe("tenant state", () => {
  test("forget drops a tenant's state; its requests in flight still end cleanly", () => {
    const store = new MemoryUsageStore();
    const ledger = new QuotaLedger({ ...clock, store });
    const acme = tenant({ maxConcurrent: 1 });
    const old = admit(ledger, acme, 10).reservation;
    ledger.forget("acme");
    assert.equal(ledger.usage("acme"), null);
    admit(ledger, acme, 10);
    ledger.settle(old, 7);
    assert.deepEqual(pickCounts(ledger), { running: 0, queued: 1 }, "the old request does not free the new one's place");
    assert.equal(store.load().get("acme")?.lifetimeTokens, 7, "its usage is still recorded");
  });

  test("retain keeps only the listed tenants", () => {
    const ledger = new QuotaLedger(clock);
    for (const id of ["a", "b", "c"]) admit(ledger, tenant({}, id), 1);
    ledger.retain(["b"]);
    assert.deepEqual(["a", "b", "c"].map((id) => ledger.usage(id) !== null), [false, true, false]);
  });

  test("a lowered limit applies at once", () => {
    const ledger = new QuotaLedger(clock);
    admit(ledger, tenant({ requestsPerMinute: 10 }), 0);
    admit(ledger, tenant({ requestsPerMinute: 10 }), 0);
    const err = refuse(ledger, tenant({ requestsPerMinute: 2 }), 0);
    assert.equal(err.type, "requests");
    assert.equal(err.headers["retry-after-ms"], "30000", "one request at 2/min");
  });

  test("rejects nonsense token counts loudly", () => {
    const ledger = new QuotaLedger(clock);
    assert.throws(() => ledger.reserve(tenant({}), { estimatedTokens: -1 }), RangeError);
    assert.throws(() => ledger.reserve(tenant({}), { estimatedTokens: Number.NaN }), RangeError);
  });
});

function pickCounts(ledger: QuotaLedger, id = "acme"): { running: number; queued: number } {
  const u = ledger.usage(id);
  assert.ok(u);
  return { running: u.running, queued: u.queued };
}
