// The quota contract (src/quota/quota.ts): what a client sees in
// x-ratelimit-* headers and in 429s as it uses up and regains its limits, on a
// fake clock. Run against every implementation: the in-process QuotaLedger
// (ledger.test.ts) and RedisQuota on a real redis-server (redisQuota.test.ts),
// so both give the same decisions, headers and counters for the same sequence.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import type { Quota, Reservation } from "../../../src/quota/quota.js";
import { MemoryUsageStore, type UsageStore } from "../../../src/quota/usageStore.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits } from "../../../src/tenants/types.js";

export interface QuotaOptions {
  now: () => number;
  store?: UsageStore;
  queueRetryAfterMs?: number;
}

/** Makes a fresh quota with empty books; the contract closes it after the test. */
export type QuotaFactory = (o: QuotaOptions) => Promise<Quota>;

export const NOON = Date.UTC(2025, 0, 15, 12, 0, 0);

export function tenant(limits: Partial<TenantLimits>, id = "acme"): Tenant {
  return { id, limits: { ...DEFAULT_LIMITS, ...limits }, scheduling: DEFAULT_SCHEDULING };
}

export async function admit(ledger: Quota, t: Tenant, estimatedTokens: number): Promise<{ reservation: Reservation; headers: Record<string, string> }> {
  const r = await ledger.reserve(t, { estimatedTokens });
  if (!r.ok) assert.fail(`expected admission, got ${r.error.code}: ${r.error.message}`);
  return r;
}

export async function refuse(ledger: Quota, t: Tenant, estimatedTokens: number): Promise<ApiError> {
  const r = await ledger.reserve(t, { estimatedTokens });
  if (r.ok) assert.fail(`expected a refusal, got admission #${r.reservation.id}`);
  assert.ok(r.error instanceof ApiError);
  assert.equal(r.error.status, 429);
  return r.error;
}

function rateHeaders(h: Record<string, string>, dim: "requests" | "tokens"): [string?, string?, string?] {
  return [h[`x-ratelimit-limit-${dim}`], h[`x-ratelimit-remaining-${dim}`], h[`x-ratelimit-reset-${dim}`]];
}

export function quotaContract(name: string, factory: QuotaFactory, options: { skip?: string | false } = {}): void {
  let nowMs = NOON;
  const clock = { now: () => nowMs };
  const made: Quota[] = [];
  const make = async (o: QuotaOptions): Promise<Quota> => {
    const q = await factory(o);
    made.push(q);
    return q;
  };

  async function pickCounts(ledger: Quota, id = "acme"): Promise<{ running: number; queued: number }> {
    const u = await ledger.usage(id);
    assert.ok(u);
    return { running: u.running, queued: u.queued };
  }

  describe(`${name}: quota contract`, options, () => {
    beforeEach(() => {
      nowMs = NOON;
    });
    afterEach(async () => {
      for (const q of made.splice(0).reverse()) await q.close();
    });
    describe("x-ratelimit-* headers", () => {
      test("count down as requests are admitted and refill continuously", async () => {
        const ledger = await make(clock);
        const acme = tenant({ requestsPerMinute: 10, tokensPerMinute: 1000 });
        assert.deepEqual(await ledger.headers(acme), {
          "x-ratelimit-limit-requests": "10",
          "x-ratelimit-remaining-requests": "10",
          "x-ratelimit-reset-requests": "0s",
          "x-ratelimit-limit-tokens": "1000",
          "x-ratelimit-remaining-tokens": "1000",
          "x-ratelimit-reset-tokens": "0s",
        });

        const first = (await admit(ledger, acme, 100)).headers;
        assert.deepEqual(rateHeaders(first, "requests"), ["10", "9", "6s"]);
        assert.deepEqual(rateHeaders(first, "tokens"), ["1000", "900", "6s"]);

        const second = (await admit(ledger, acme, 300)).headers;
        assert.deepEqual(rateHeaders(second, "requests"), ["10", "8", "12s"]);
        assert.deepEqual(rateHeaders(second, "tokens"), ["1000", "600", "24s"]);

        nowMs += 3000; // refills 0.5 request and 50 tokens
        const later = await ledger.headers(acme);
        assert.deepEqual(rateHeaders(later, "requests"), ["10", "8", "9s"], "remaining is floor(8.5)");
        assert.deepEqual(rateHeaders(later, "tokens"), ["1000", "650", "21s"]);

        nowMs += 21_000;
        assert.deepEqual(rateHeaders(await ledger.headers(acme), "tokens"), ["1000", "1000", "0s"]);
        assert.deepEqual(rateHeaders(await ledger.headers(acme), "requests"), ["10", "10", "0s"]);
      });

      test("long resets are written in minutes", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerMinute: 100 });
        assert.equal((await admit(ledger, acme, 100)).headers["x-ratelimit-reset-tokens"], "1m0s");
        nowMs += 30_000;
        assert.equal((await ledger.headers(acme))["x-ratelimit-reset-tokens"], "30s");
      });

      test("an unlimited dimension sends none of its headers", async () => {
        const ledger = await make(clock);
        const onlyTpm = tenant({ tokensPerMinute: 500 });
        assert.deepEqual(Object.keys((await admit(ledger, onlyTpm, 10)).headers).sort(), [
          "x-ratelimit-limit-tokens",
          "x-ratelimit-remaining-tokens",
          "x-ratelimit-reset-tokens",
        ]);
        assert.deepEqual((await admit(ledger, tenant({}, "free"), 10)).headers, {});
      });
    });

    describe("requests per minute", () => {
      test("N requests pass, N+1 is refused with type requests and the exact wait", async () => {
        const ledger = await make(clock);
        const acme = tenant({ requestsPerMinute: 10 });
        for (let i = 0; i < 10; i++) await admit(ledger, acme, 5);
        const err = await refuse(ledger, acme, 5);
        assert.equal(err.code, "rate_limit_exceeded");
        assert.equal(err.type, "requests");
        assert.equal(err.message, "Rate limit reached for requests per min (RPM) on tenant acme: Limit 10, Used 10, Requested 1. Please try again in 6s.");
        assert.equal(err.retryAfterSeconds, 6);
        assert.equal(err.headers["retry-after"], "6");
        assert.equal(err.headers["retry-after-ms"], "6000");
        assert.equal(err.headers["x-ratelimit-remaining-requests"], "0");
        assert.equal(err.headers["x-ratelimit-reset-requests"], "1m0s");
        assert.equal(err.headers["x-should-retry"], undefined, "a rate limit is worth retrying");
      });

      test("the wait counts down, a refused request costs nothing, and the request passes once the wait is over", async () => {
        const ledger = await make(clock);
        const acme = tenant({ requestsPerMinute: 10 });
        for (let i = 0; i < 10; i++) await admit(ledger, acme, 0);
        nowMs += 5999;
        const err = await refuse(ledger, acme, 0);
        assert.equal(err.headers["retry-after-ms"], "1");
        assert.equal(err.headers["retry-after"], "1");
        nowMs += 1;
        const h = (await admit(ledger, acme, 0)).headers;
        assert.equal(h["x-ratelimit-remaining-requests"], "0");
        await refuse(ledger, acme, 0);
      });
    });

    describe("tokens per minute", () => {
      test("a request needing exactly the remaining tokens passes; one more token is refused with type tokens", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerMinute: 1000 });
        await admit(ledger, acme, 600);
        const err = await refuse(ledger, acme, 401);
        assert.equal(err.code, "rate_limit_exceeded");
        assert.equal(err.type, "tokens");
        assert.equal(err.message, "Rate limit reached for tokens per min (TPM) on tenant acme: Limit 1000, Used 600, Requested 401. Please try again in 60ms.");
        assert.equal(err.headers["retry-after-ms"], "60", "1 token at 1000/min");
        assert.equal(err.headers["retry-after"], "1", "seconds, rounded up");
        assert.equal(err.retryAfterSeconds, 1);
        assert.equal(err.headers["x-ratelimit-remaining-tokens"], "400");
        await admit(ledger, acme, 400);
        const full = await refuse(ledger, acme, 1);
        assert.equal(full.headers["x-ratelimit-remaining-tokens"], "0");
        assert.equal(full.headers["retry-after-ms"], "60");
      });

      test("a request larger than the limit is told not to retry", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerMinute: 1000 });
        const err = await refuse(ledger, acme, 1001);
        assert.equal(err.code, "rate_limit_exceeded");
        assert.equal(err.type, "tokens");
        assert.match(err.message, /^Request too large for tokens per min \(TPM\) on tenant acme: Limit 1000, Requested 1001\./);
        assert.equal(err.headers["x-should-retry"], "false");
        assert.equal(err.retryAfterSeconds, null);
        assert.equal(err.headers["retry-after"], undefined);
        assert.equal(err.headers["retry-after-ms"], undefined);
        await admit(ledger, acme, 1000);
      });

      test("settling below the estimate refunds the difference and makes room again", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerMinute: 1000 });
        const { reservation } = await admit(ledger, acme, 1000);
        await refuse(ledger, acme, 1);
        await ledger.settle(reservation, 200);
        assert.equal((await ledger.headers(acme))["x-ratelimit-remaining-tokens"], "800");
        await ledger.settle(reservation, 200); // idempotent: no second refund
        assert.equal((await ledger.headers(acme))["x-ratelimit-remaining-tokens"], "800");
        await admit(ledger, acme, 800);
        await refuse(ledger, acme, 1);
      });

      test("settling above the estimate charges the extra, past empty", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerMinute: 1000 });
        const { reservation } = await admit(ledger, acme, 100);
        await ledger.settle(reservation, 1500);
        const h = await ledger.headers(acme);
        assert.equal(h["x-ratelimit-remaining-tokens"], "0");
        assert.equal(h["x-ratelimit-reset-tokens"], "1m30s", "1500 tokens at 1000/min");
        const err = await refuse(ledger, acme, 1);
        assert.match(err.message, /Used 1500, Requested 1\. Please try again in 30\.06s\./);
        assert.equal(err.headers["retry-after-ms"], "30060");
        assert.equal(err.headers["retry-after"], "31");
        nowMs += 30_060;
        await admit(ledger, acme, 1);
      });
    });

    describe("daily and lifetime budgets", () => {
      test("a spent daily budget is insufficient_quota, with x-should-retry false and no retry-after", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerDay: 1000, tokensPerMinute: 10_000 });
        await ledger.settle((await admit(ledger, acme, 700)).reservation, 600);
        const err = await refuse(ledger, acme, 401);
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
        await admit(ledger, acme, 400);
        await refuse(ledger, acme, 1);
      });

      test("a spent budget is reported before a rate limit, so the client does not wait in vain", async () => {
        const ledger = await make(clock);
        const acme = tenant({ tokensPerDay: 100, requestsPerMinute: 1 });
        await admit(ledger, acme, 100);
        assert.equal((await refuse(ledger, acme, 1)).code, "insufficient_quota");
      });

      test("the day rolls over at 00:00 UTC", async () => {
        nowMs = Date.UTC(2025, 0, 15, 23, 59, 59, 0);
        const store = new MemoryUsageStore();
        const ledger = await make({ ...clock, store });
        const acme = tenant({ tokensPerDay: 1000 });
        await ledger.settle((await admit(ledger, acme, 1000)).reservation, 1000);
        const late = (await admit(ledger, tenant({ tokensPerDay: 2000 }), 500)).reservation; // in flight across midnight
        nowMs += 999;
        assert.match((await refuse(ledger, acme, 1)).message, /in 1ms\.$/);
        nowMs += 1;
        assert.equal((await ledger.usage("acme"))?.dayTokens, 0);
        assert.equal((await ledger.usage("acme"))?.day, "2025-01-16");
        const fresh = (await admit(ledger, acme, 300)).reservation;
        await ledger.settle(late, 100); // charged to the 15th, where it was admitted
        assert.equal((await ledger.usage("acme"))?.dayTokens, 300, "yesterday's request does not touch today's count");
        assert.equal((await ledger.usage("acme"))?.lifetimeTokens, 1400);
        await ledger.settle(fresh, 250);
        assert.deepEqual((await store.load()).get("acme"), { day: "2025-01-16", dayTokens: 250, lifetimeTokens: 1350 });
      });

      test("the lifetime budget does not roll over", async () => {
        const ledger = await make(clock);
        const acme = tenant({ lifetimeTokens: 1000, tokensPerDay: 800 });
        await ledger.settle((await admit(ledger, acme, 700)).reservation, 700);
        nowMs += 86_400_000;
        const err = await refuse(ledger, acme, 301);
        assert.equal(err.code, "insufficient_quota");
        assert.equal(err.headers["x-should-retry"], "false");
        assert.equal(err.retryAfterSeconds, null);
        assert.match(err.message, /^You exceeded your lifetime token budget on tenant acme: Limit 1000, Used 700, Requested 301\./);
        await admit(ledger, acme, 300);
      });
    });

    describe("concurrency and queue caps", () => {
      test("queued and running requests are capped; a slot frees when a request ends", async () => {
        const ledger = await make(clock);
        const acme = tenant({ maxConcurrent: 2, maxQueued: 1 });
        const a = (await admit(ledger, acme, 10)).reservation;
        const queued = await refuse(ledger, acme, 10);
        assert.equal(queued.code, "queue_full");
        assert.equal(queued.type, "rate_limit_error");
        assert.equal(queued.message, "Too many queued requests on tenant acme: Limit 1, Queued 1. Please try again in 1s.");
        assert.equal(queued.retryAfterSeconds, 1);
        assert.equal(queued.headers["retry-after-ms"], "1000");

        await ledger.started(a);
        await ledger.started(a); // idempotent
        assert.deepEqual(await pickCounts(ledger), { running: 1, queued: 0 });
        const b = (await admit(ledger, acme, 10)).reservation;
        const concurrent = await refuse(ledger, acme, 10);
        assert.equal(concurrent.code, "queue_full");
        assert.equal(concurrent.message, "Too many concurrent requests on tenant acme: Limit 2, Running or queued 2. Please try again in 1s.");
        assert.equal(concurrent.headers["retry-after"], "1");

        await ledger.settle(a, 10);
        await ledger.settle(a, 10); // idempotent
        assert.deepEqual(await pickCounts(ledger), { running: 0, queued: 1 });
        await ledger.started(b);
        await admit(ledger, acme, 10);
        assert.deepEqual(await pickCounts(ledger), { running: 1, queued: 1 });
      });

      test("the wait suggested for a full queue is configurable", async () => {
        const ledger = await make({ ...clock, queueRetryAfterMs: 250 });
        const acme = tenant({ maxConcurrent: 1 });
        await admit(ledger, acme, 1);
        const err = await refuse(ledger, acme, 1);
        assert.equal(err.headers["retry-after-ms"], "250");
        assert.equal(err.headers["retry-after"], "1");
      });
    });

    describe("cancel", () => {
      test("refunds the request unit and every token of a request that never ran, once", async () => {
        const store = new MemoryUsageStore();
        const ledger = await make({ ...clock, store });
        const acme = tenant({ requestsPerMinute: 2, tokensPerMinute: 100, tokensPerDay: 100, lifetimeTokens: 100, maxConcurrent: 2 });
        const a = (await admit(ledger, acme, 50)).reservation;
        await admit(ledger, acme, 50);
        await refuse(ledger, acme, 0);
        await ledger.cancel(a);
        await ledger.cancel(a);
        await ledger.settle(a, 50); // after cancel: a no-op
        const h = await ledger.headers(acme);
        assert.equal(h["x-ratelimit-remaining-requests"], "1");
        assert.equal(h["x-ratelimit-remaining-tokens"], "50");
        assert.deepEqual(await ledger.usage("acme"), { day: "2025-01-15", dayTokens: 50, lifetimeTokens: 50, running: 0, queued: 1 });
        assert.equal((await store.load()).size, 0, "nothing stored for a request that never ran");
        await admit(ledger, acme, 50);
      });
    });

    describe("tenant state", () => {
      test("forget drops a tenant's state; its requests in flight still end cleanly", async () => {
        const store = new MemoryUsageStore();
        const ledger = await make({ ...clock, store });
        const acme = tenant({ maxConcurrent: 1 });
        const old = (await admit(ledger, acme, 10)).reservation;
        await ledger.forget("acme");
        assert.equal(await ledger.usage("acme"), null);
        await admit(ledger, acme, 10);
        await ledger.settle(old, 7);
        assert.deepEqual(await pickCounts(ledger), { running: 0, queued: 1 }, "the old request does not free the new one's place");
        assert.equal((await store.load()).get("acme")?.lifetimeTokens, 7, "its usage is still recorded");
      });

      test("retain keeps only the listed tenants", async () => {
        const ledger = await make(clock);
        for (const id of ["a", "b", "c"]) await admit(ledger, tenant({}, id), 1);
        await ledger.retain(["b"]);
        assert.deepEqual(await Promise.all(["a", "b", "c"].map(async (id) => (await ledger.usage(id)) !== null)), [false, true, false]);
      });

      test("a lowered limit applies at once", async () => {
        const ledger = await make(clock);
        await admit(ledger, tenant({ requestsPerMinute: 10 }), 0);
        await admit(ledger, tenant({ requestsPerMinute: 10 }), 0);
        const err = await refuse(ledger, tenant({ requestsPerMinute: 2 }), 0);
        assert.equal(err.type, "requests");
        assert.equal(err.headers["retry-after-ms"], "30000", "one request at 2/min");
      });

      test("rejects nonsense token counts loudly", async () => {
        const ledger = await make(clock);
        await assert.rejects(ledger.reserve(tenant({}), { estimatedTokens: -1 }), RangeError);
        await assert.rejects(ledger.reserve(tenant({}), { estimatedTokens: Number.NaN }), RangeError);
      });
    });

    describe("QuotaLedger.resize", () => {
      for (const limits of [{ tokensPerDay: 1000 }, { lifetimeTokens: 1000 }, { tokensPerMinute: 1000 }] satisfies Partial<TenantLimits>[]) {
        const name = Object.keys(limits)[0];
        test(`${name}: concurrent underestimates cannot all grow past the limit; the one that does not fit is refused`, async () => {
          const l = await make(clock);
          const t = tenant(limits);
          // Three requests each estimated at 200 (cl100k), each 400 by the model's count.
          const rs = [(await admit(l, t, 200)).reservation, (await admit(l, t, 200)).reservation, (await admit(l, t, 200)).reservation];
          assert.equal(await l.resize(t, rs[0]!, 400), null);
          assert.equal(await l.resize(t, rs[1]!, 400), null);
          const refused = await l.resize(t, rs[2]!, 400);
          assert.ok(refused instanceof ApiError && refused.status === 429, "800 + 400 > 1000");
          assert.equal(l.held(rs[2]!), 200, "a refused resize changes nothing");
          await l.cancel(rs[2]!);
          // Both run to their bound: never more than the limit in all.
          await l.settle(rs[0]!, 400);
          await l.settle(rs[1]!, 400);
          if (name !== "tokensPerMinute") assert.equal((await l.usage("acme"))![name === "tokensPerDay" ? "dayTokens" : "lifetimeTokens"], 800);
          const r = await l.reserve(t, { estimatedTokens: 201 });
          assert.equal(r.ok, false, "201 more would pass 1000");
        });
      }

      test("a resize down refunds at once, and settle moves the counters from what is held, not the first estimate", async () => {
        const l = await make(clock);
        const t = tenant({ tokensPerDay: 1000 });
        const r = (await admit(l, t, 600)).reservation;
        assert.equal(await l.resize(t, r, 100), null);
        assert.equal((await l.usage("acme"))!.dayTokens, 100);
        await l.settle(r, 90);
        assert.equal((await l.usage("acme"))!.dayTokens, 90);
      });

      test("cancel refunds what is held after a resize", async () => {
        const l = await make(clock);
        const t = tenant({ lifetimeTokens: 1000 });
        const r = (await admit(l, t, 100)).reservation;
        assert.equal(await l.resize(t, r, 700), null);
        assert.equal((await l.usage("acme"))!.lifetimeTokens, 700);
        await l.cancel(r);
        assert.equal((await l.usage("acme"))!.lifetimeTokens, 0);
      });

      test("a request larger than the per-minute limit by the model's count is too large, not a wait", async () => {
        const l = await make(clock);
        const t = tenant({ tokensPerMinute: 1000 });
        const r = (await admit(l, t, 300)).reservation;
        const err = await l.resize(t, r, 1500);
        assert.ok(err instanceof ApiError);
        assert.match(err.message, /1000/);
        assert.equal(err.headers?.["x-should-retry"], "false");
      });

      test("resizing a reservation that is over does nothing", async () => {
        const l = await make(clock);
        const t = tenant({ tokensPerDay: 1000 });
        const r = (await admit(l, t, 100)).reservation;
        await l.settle(r, 50);
        assert.equal(await l.resize(t, r, 5000), null);
        assert.equal((await l.usage("acme"))!.dayTokens, 50);
      });
    });
  });
}
