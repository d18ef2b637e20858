// RedisQuota (src/quota/redis/) on a real redis-server started by the test:
// the quota contract QuotaLedger passes, the same decisions as QuotaLedger for
// the same scripted sequence, limits exact across replicas, leases that
// outlive a dead replica only until they expire, and Redis going away.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import type { ApiError } from "../../../src/errors.js";
import { QuotaLedger } from "../../../src/quota/ledger.js";
import { LocalQuota, type Reservation } from "../../../src/quota/quota.js";
import { createRedisClient } from "../../../src/quota/redis/client.js";
import { replicaShare } from "../../../src/quota/redis/fallback.js";
import { RedisQuota, type RedisQuotaOptions } from "../../../src/quota/redis/redisQuota.js";
import { MemoryUsageStore } from "../../../src/quota/usageStore.js";
import { DEFAULT_LIMITS } from "../../../src/tenants/types.js";
import { skipWithoutRedis, startRedis, type TestRedis } from "../../helpers/redis.js";
import { admit, NOON, quotaContract, refuse, tenant } from "./quotaContract.js";

const skip = skipWithoutRedis();
let server: TestRedis | null = null;
let prefixes = 0;
const clients: Redis[] = [];

before(async () => {
  if (!skip.skip) server = await startRedis();
});
after(async () => {
  for (const c of clients.splice(0).reverse()) c.disconnect();
  await server?.close();
});

/** A client of the test's Redis, disconnected after the file. */
function client(): Redis {
  const c = createRedisClient({ url: server!.url, timeoutMs: 500 });
  clients.push(c);
  return c;
}

async function ready(c: Redis): Promise<void> {
  if (c.status !== "ready") await new Promise((resolve) => c.once("ready", resolve));
}

/** A RedisQuota on its own key prefix (books of its own), with no timer: tests call tick(). */
async function redisQuota(o: Partial<RedisQuotaOptions> & { prefix?: string } = {}): Promise<RedisQuota> {
  const c = o.redis ?? client();
  await ready(c);
  return new RedisQuota({ redis: c, keyPrefix: o.prefix ?? `t${++prefixes}:`, tickMs: 0, leaseMs: 600_000, ...o });
}

quotaContract("RedisQuota", (o) => redisQuota({ now: o.now, store: o.store ?? null, queueRetryAfterMs: o.queueRetryAfterMs }), skip);

describe("RedisQuota", skip, () => {
  test("gives the same decisions, headers and counters as QuotaLedger for the same scripted sequence", async () => {
    let nowMs = NOON;
    const now = () => nowMs;
    const local = new LocalQuota(new QuotaLedger({ now, store: new MemoryUsageStore() }));
    const shared = await redisQuota({ now, store: new MemoryUsageStore() });
    // Two tenants: one that meets its rate limits and caps, one that meets its budgets.
    const profiles = {
      acme: { requestsPerMinute: 40, tokensPerMinute: 1200, maxConcurrent: 5, maxQueued: 3, tokensPerDay: 4000, lifetimeTokens: 40_000 },
      beta: { maxConcurrent: 6, tokensPerDay: 1500, lifetimeTokens: 5000 },
    };
    // A deterministic pseudo-random walk (an LCG's high bits: its low bits cycle) over every operation.
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
    const live: [Reservation, Reservation, string][] = [];
    const seen = new Set<string>();
    const outcome = (r: { ok: true; headers: Record<string, string> } | { ok: false; error: ApiError }) =>
      r.ok ? { ok: true, headers: r.headers } : { ok: false, code: r.error.code, type: r.error.type, message: r.error.message, headers: r.error.headers };
    const tenantOf = (id: "acme" | "beta") => tenant(id === "acme" && rand(20) === 0 ? { ...profiles.acme, requestsPerMinute: 3 } : profiles[id], id); // now and then a lowered limit
    for (let step = 0; step < 800; step++) {
      const op = rand(10);
      if (op < 4 || live.length === 0) {
        const t = tenantOf(rand(2) ? "acme" : "beta");
        const est = rand(400);
        const [a, b] = [await local.reserve(t, { estimatedTokens: est }), await shared.reserve(t, { estimatedTokens: est })];
        assert.deepEqual(outcome(b), outcome(a), `step ${step}: reserve ${est}`);
        seen.add(a.ok ? "admitted" : `${a.error.code}/${a.error.type}`);
        if (a.ok && b.ok) live.push([a.reservation, b.reservation, t.id]);
      } else {
        const i = rand(live.length);
        const [a, b, id] = live[i]!;
        if (op === 4) {
          const t = tenantOf(id as "acme" | "beta");
          const tokens = rand(600);
          const [ea, eb] = [await local.resize(t, a, tokens), await shared.resize(t, b, tokens)];
          assert.deepEqual(
            eb && { code: eb.code, message: eb.message, headers: eb.headers },
            ea && { code: ea.code, message: ea.message, headers: ea.headers },
            `step ${step}: resize`,
          );
          assert.equal(shared.held(b), local.held(a));
        } else if (op === 5) {
          await local.started(a);
          await shared.started(b);
        } else if (op <= 7) {
          const used = rand(500);
          await local.settle(a, used);
          await shared.settle(b, used);
          live.splice(i, 1);
        } else if (op === 8) {
          await local.cancel(a);
          await shared.cancel(b);
          live.splice(i, 1);
        } else {
          nowMs += rand(40) === 0 ? 86_400_000 : rand(8000); // now and then the next day
        }
      }
      for (const id of ["acme", "beta"] as const) {
        const t = tenant(profiles[id], id);
        assert.deepEqual(await shared.headers(t), await local.headers(t), `step ${step}: headers of ${id}`);
        assert.deepEqual(await shared.usage(id), await local.usage(id), `step ${step}: counters of ${id}`);
      }
    }
    // The walk went through every kind of decision, or it proves little.
    assert.deepEqual([...seen].sort(), [
      "admitted",
      "insufficient_quota/insufficient_quota",
      "queue_full/rate_limit_error",
      "rate_limit_exceeded/requests",
      "rate_limit_exceeded/tokens",
    ]);
    await shared.close();
  });

  test("two replicas on one Redis admit exactly the limit between them, at once", async () => {
    const prefix = `rpm${++prefixes}:`;
    const [a, b] = [await redisQuota({ prefix, now: null }), await redisQuota({ prefix, now: null })];
    const t = tenant({ requestsPerMinute: 5, maxConcurrent: 100 });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).reserve(t, { estimatedTokens: 0 })));
    assert.equal(results.filter((r) => r.ok).length, 5);
    const refused = results.filter((r) => !r.ok).map((r) => (r.ok ? null : r.error));
    assert.ok(refused.every((e) => e!.code === "rate_limit_exceeded" && e!.headers["x-ratelimit-remaining-requests"] === "0"));
    await a.close();
    await b.close();
  });

  test("tokens reserved on one replica and refunded at settle are usable on another", async () => {
    const nowMs = NOON;
    const prefix = `tpm${++prefixes}:`;
    const [a, b] = [await redisQuota({ prefix, now: () => nowMs }), await redisQuota({ prefix, now: () => nowMs })];
    const t = tenant({ tokensPerMinute: 1000 });
    const r = (await admit(a, t, 1000)).reservation;
    const err = await refuse(b, t, 600);
    assert.equal(err.headers["x-ratelimit-remaining-tokens"], "0");
    await a.settle(r, 300);
    assert.equal((await admit(b, t, 700)).headers["x-ratelimit-remaining-tokens"], "0");
    await a.close();
    await b.close();
  });

  test("a replica that stops renewing (it died) holds its places only until the lease expires", async () => {
    let nowMs = NOON;
    const prefix = `lease${++prefixes}:`;
    const now = () => nowMs;
    const dead = await redisQuota({ prefix, now, leaseMs: 5000 });
    const alive = await redisQuota({ prefix, now, leaseMs: 5000 });
    const t = tenant({ maxConcurrent: 2 });
    const held = (await admit(dead, t, 0)).reservation;
    await dead.started(held);
    const own = (await admit(alive, t, 0)).reservation;
    await refuse(alive, t, 0);
    // The live replica renews its own lease; the dead one never does.
    nowMs += 4000;
    await alive.tick();
    nowMs += 4000;
    await alive.tick();
    const third = (await admit(alive, t, 0)).reservation; // `held` expired, `own` was renewed
    assert.deepEqual((await alive.usage("acme"))!.queued + (await alive.usage("acme"))!.running, 2);
    await refuse(alive, t, 0);
    for (const r of [own, third]) await alive.settle(r, 0);
    await dead.settle(held, 0); // late: its place was already freed, nothing is freed twice
    assert.deepEqual([(await alive.usage("acme"))!.running, (await alive.usage("acme"))!.queued], [0, 0]);
    await dead.close();
    await alive.close();
  });

  test("a replica cut off longer than its lease counts its running requests again when it renews", async () => {
    let nowMs = NOON;
    const prefix = `cutoff${++prefixes}:`;
    const now = () => nowMs;
    const [away, other] = [await redisQuota({ prefix, now, leaseMs: 5000 }), await redisQuota({ prefix, now, leaseMs: 5000 })];
    const t = tenant({ maxConcurrent: 2 });
    const r = (await admit(away, t, 0)).reservation;
    await away.started(r);
    nowMs += 6000; // no renewal reached Redis: the lease lapsed
    assert.equal((await other.usage("acme"))!.running, 0);
    await away.tick(); // back in touch: the request is still running, so it holds its place again
    assert.deepEqual([(await other.usage("acme"))!.running, (await other.usage("acme"))!.queued], [1, 0]);
    await away.settle(r, 0);
    assert.equal((await other.usage("acme"))!.running, 0);
    await away.close();
    await other.close();
  });

  test("budgets start from the stored usage, and every settle is stored", async () => {
    const store = new MemoryUsageStore();
    await store.add("acme", "2025-01-15", 900);
    await store.add("acme", "2025-01-14", 50);
    const prefix = `seed${++prefixes}:`;
    const [a, b] = [await redisQuota({ prefix, now: () => NOON, store }), await redisQuota({ prefix, now: () => NOON, store })];
    const t = tenant({ tokensPerDay: 1000, lifetimeTokens: 2000 });
    assert.equal((await refuse(a, t, 101)).code, "insufficient_quota");
    const r = (await admit(b, t, 100)).reservation;
    await b.settle(r, 60);
    assert.deepEqual(await store.usageOf("acme"), { day: "2025-01-15", dayTokens: 960, lifetimeTokens: 1010 });
    assert.deepEqual(await a.usage("acme"), { day: "2025-01-15", dayTokens: 960, lifetimeTokens: 1010, running: 0, queued: 0 });
    await a.close();
    await b.close();
  });

  test("uses Redis TIME when no clock is given", async () => {
    const q = await redisQuota({ now: null });
    const t = tenant({ requestsPerMinute: 2 });
    await admit(q, t, 0);
    const h = (await admit(q, t, 0)).headers;
    assert.equal(h["x-ratelimit-remaining-requests"], "0");
    const err = await refuse(q, t, 0);
    const waitMs = Number(err.headers["retry-after-ms"]);
    assert.ok(waitMs > 29_000 && waitMs <= 30_000, `one request at 2/min: ${waitMs}`);
    await q.close();
  });
});

describe("RedisQuota when Redis goes away", skip, () => {
  for (const fallback of ["refuse", "local"] as const) {
    test(`${fallback}: answers at once without Redis, says so in its gauge, and comes back by itself`, async () => {
      // A Redis of its own: this test stops it.
      const own = await startRedis();
      const c = createRedisClient({ url: own.url, timeoutMs: 300 });
      try {
        await ready(c);
        const registry = new Registry();
        const logs: string[] = [];
        const log = {
          info: (_o: unknown, m: string) => logs.push(`info ${m}`),
          warn: (_o: unknown, m: string) => logs.push(`warn ${m}`),
          error: (_o: unknown, m: string) => logs.push(`error ${m}`),
        };
        const q = new RedisQuota({ redis: c, tickMs: 0, fallback, log: log as never, registry });
        const t = tenant({ requestsPerMinute: 6, maxConcurrent: 10 });
        await q.tick(); // counts the live replicas: 1
        const before = (await admit(q, t, 0)).reservation;
        await own.stop();

        const started = performance.now();
        const results = await Promise.all(Array.from({ length: 10 }, () => q.reserve(t, { estimatedTokens: 0 })));
        assert.ok(performance.now() - started < 2000, "no hang: every answer within the command timeout");
        assert.equal(q.currentMode, fallback);
        assert.match(await registry.metrics(), new RegExp(`llamux_quota_mode\\{mode="${fallback}"\\} 1`));
        assert.equal(logs.filter((l) => l.startsWith("warn")).length, 1, "one log line per transition");
        if (fallback === "refuse") {
          assert.ok(results.every((r) => !r.ok && r.error.status === 503 && r.error.code === "quota_unavailable"));
        } else {
          // One replica seen: its share is the whole limit, counted from zero in this outage.
          assert.equal(results.filter((r) => r.ok).length, 6);
        }
        await q.settle(before, 0); // a reservation from before the outage ends cleanly
        for (const r of results) if (r.ok) await q.settle(r.reservation, 0);

        await own.start();
        await ready(c);
        await q.tick();
        assert.equal(q.currentMode, "redis");
        assert.match(await registry.metrics(), /llamux_quota_mode\{mode="redis"\} 1/);
        assert.equal(logs.at(-1), "info Redis reachable again: quotas are shared across replicas again");
        assert.ok((await q.reserve(t, { estimatedTokens: 0 })).ok);
        await q.close();
      } finally {
        c.disconnect();
        await own.close();
      }
    });
  }

  test("local: budgets alone are the stored usage plus this replica's share of what is left", async () => {
    const own = await startRedis();
    const c = createRedisClient({ url: own.url, timeoutMs: 300 });
    try {
      await ready(c);
      const store = new MemoryUsageStore();
      await store.add("acme", "2025-01-15", 700); // 300 of 1000 left today
      const q = new RedisQuota({ redis: c, tickMs: 0, fallback: "local", replicas: 3, now: () => NOON, store });
      await own.stop();
      const t = tenant({ tokensPerDay: 1000 });
      const err = await refuse(q, t, 101); // a third of 300 is 100
      assert.equal(err.code, "insufficient_quota");
      assert.match(err.message, /Limit 800, Used 700, Requested 101/);
      const r = (await admit(q, t, 100)).reservation;
      await q.settle(r, 40);
      assert.deepEqual(await store.usageOf("acme"), { day: "2025-01-15", dayTokens: 740, lifetimeTokens: 740 }, "usage decided alone is stored too");
      await q.close();
    } finally {
      c.disconnect();
      await own.close();
    }
  });

  test("local without a known replica count refuses rather than admit without bound", async () => {
    const own = await startRedis();
    const c = createRedisClient({ url: own.url, timeoutMs: 300 });
    try {
      await ready(c);
      const q = new RedisQuota({ redis: c, tickMs: 0, fallback: "local" }); // never ticked: no count
      await own.stop();
      const r = await q.reserve(tenant({ requestsPerMinute: 6 }), { estimatedTokens: 0 });
      assert.ok(!r.ok && r.error.code === "quota_unavailable");
      await q.close();
    } finally {
      c.disconnect();
      await own.close();
    }
  });
});

describe("replicaShare", () => {
  test("each rate and cap is ceil(limit ÷ replicas); each budget is used + ceil(left ÷ replicas)", () => {
    const limits = {
      ...DEFAULT_LIMITS,
      requestsPerMinute: 5,
      tokensPerMinute: 1000,
      maxConcurrent: 1,
      maxQueued: null,
      tokensPerDay: 1000,
      lifetimeTokens: 10_000,
      maxTokens: 64,
    };
    assert.deepEqual(replicaShare(limits, 3, { dayTokens: 400, lifetimeTokens: 9_999 }), {
      ...limits,
      requestsPerMinute: 2,
      tokensPerMinute: 334,
      maxConcurrent: 1,
      maxQueued: null,
      tokensPerDay: 400 + 200,
      lifetimeTokens: 10_000,
    });
    assert.deepEqual(replicaShare(limits, 1, { dayTokens: 0, lifetimeTokens: 0 }), limits);
    assert.throws(() => replicaShare(limits, 0, { dayTokens: 0, lifetimeTokens: 0 }), RangeError);
  });
});
