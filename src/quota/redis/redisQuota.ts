// Per-tenant quotas shared by every replica through one Redis: the same
// books as QuotaLedger (RPM and TPM buckets, concurrency and queue caps,
// daily and lifetime budgets), kept in Redis and changed only by the Lua
// scripts in scripts.ts, one atomic script per step of a request. So N
// replicas admit exactly what one would, and every x-ratelimit-* header and
// 429 is computed from the shared state.
//
// - Clock: Redis TIME (replicas' clocks differ); `now` replaces it in tests.
// - Budgets: the counters in Redis are seeded from the usage store (the
//   tenant's stored day and lifetime totals) the first time a tenant is
//   touched, and every settle adds the actual usage to the store as well.
// - Leases: a reservation's place in the tenant's queued or running set is a
//   lease this replica renews; a replica that dies stops renewing, and the
//   next script to touch the tenant frees the place once it expires.
// - Redis out of reach: the fallback (fallback.ts) decides, and a probe
//   switches back when Redis answers again. Calls never wait on a dead
//   Redis longer than the command timeout.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { Gauge, type Registry } from "prom-client";
import { ApiError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { Tenant } from "../../tenants/types.js";
import { decideAdmission } from "../admission.js";
import type { QuotaLedger, Reservation, ReserveResult, TenantUsage } from "../ledger.js";
import type { Quota } from "../quota.js";
import { rateLimitHeaders, type RateLimitHeaders } from "../rateLimitHeaders.js";
import { rejectionError } from "../rejectionError.js";
import type { StoredUsage, UsageStore } from "../usageStore.js";
import { msUntilUtcMidnight, utcDay } from "../utcDay.js";
import { quotaUnavailable, type QuotaMode, type RedisFallback } from "./fallback.js";
import { LocalShare } from "./localShare.js";
import { limitArgs, nullable, parseSnapshot, SCRIPTS } from "./scripts.js";

const MS_PER_DAY = 86_400_000;

export interface RedisQuotaOptions {
  redis: Redis;
  /** Prefix of every key (several deployments may share one Redis). */
  keyPrefix?: string;
  /** Clock in ms; null: Redis TIME (the same clock on every replica). */
  now?: (() => number) | null;
  /** Stored daily and lifetime usage: seeds the counters, receives every settle. */
  store?: UsageStore | null;
  queueRetryAfterMs?: number;
  /** How long a reservation's place outlives its replica's last renewal. */
  leaseMs?: number;
  /** A tenant's keys expire this long after its last request (they are rebuilt from the store). */
  stateTtlMs?: number;
  fallback?: RedisFallback;
  /** Replicas sharing the limits, for the "local" fallback; null: the live replicas last counted in Redis. */
  replicas?: number | null;
  /** Period of lease renewal, heartbeat and the probe while Redis is out; 0: no timer (tests drive tick()). */
  tickMs?: number;
  log?: Pick<Logger, "info" | "warn" | "error"> | null;
  /** Where the llamux_quota_mode gauge is registered; null: none. */
  registry?: Registry | null;
  /** close() disconnects `redis` too. */
  ownsClient?: boolean;
}

interface Live {
  reservation: Reservation;
  phase: "queued" | "running";
  keys: string[];
  dayNumber: number;
  held: number;
  /** The tenant state's epoch at reserve: a state rebuilt since does not hold this request's charge. */
  epoch: string;
  /** Admitted by the fallback ledger, not by Redis. */
  local: { ledger: QuotaLedger; tenant: Tenant; reservation: Reservation } | null;
}

export class RedisQuota implements Quota {
  readonly replicaId = randomUUID();
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly clock: (() => number) | null;
  private readonly store: UsageStore | null;
  private readonly queueRetryAfterMs: number;
  private readonly leaseMs: number;
  private readonly stateTtlMs: number;
  private readonly fallback: RedisFallback;
  private readonly replicas: number | null;
  private readonly log: Pick<Logger, "info" | "warn" | "error"> | null;
  private readonly gauge: Gauge | null;
  private readonly ownsClient: boolean;
  private readonly live = new Map<string, Live>();
  /** Tenants this replica has touched: what retain() may drop. */
  private readonly known = new Set<string>();
  private counter = 0;
  private mode: QuotaMode = "redis";
  /** Live replicas at the last heartbeat Redis answered; null: never counted. */
  private replicasSeen: number | null = null;
  /** The "local" fallback's books, new for each outage. */
  private local: LocalShare | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  /** After close(): late settles still reach the store, but a failed Redis call is no news worth a log line. */
  private closed = false;

  constructor(o: RedisQuotaOptions) {
    this.redis = o.redis;
    this.prefix = o.keyPrefix ?? "llamux:quota:";
    this.clock = o.now ?? null;
    this.store = o.store ?? null;
    this.queueRetryAfterMs = o.queueRetryAfterMs ?? 1000;
    this.leaseMs = o.leaseMs ?? 30_000;
    this.stateTtlMs = o.stateTtlMs ?? MS_PER_DAY;
    this.fallback = o.fallback ?? "local";
    this.replicas = o.replicas ?? null;
    this.log = o.log ?? null;
    this.ownsClient = o.ownsClient ?? false;
    this.gauge = o.registry
      ? new Gauge({
          name: "llamux_quota_mode",
          help: "Where this replica's quota decisions are made: 1 for the current mode (redis, or its fallback local or refuse while Redis is out of reach)",
          labelNames: ["mode"],
          registers: [o.registry],
        })
      : null;
    this.setGauge();
    const tickMs = o.tickMs ?? Math.min(1000, Math.floor(this.leaseMs / 3));
    if (tickMs > 0) {
      this.timer = setInterval(() => void this.tick(), tickMs);
      this.timer.unref();
    }
  }

  /** Where decisions are made now. */
  get currentMode(): QuotaMode {
    return this.mode;
  }

  /**
   * Heartbeat, lease renewal, and while Redis is out of reach the probe that
   * brings it back. Runs on the timer; tests call it. One at a time.
   */
  tick(): Promise<void> {
    return (this.ticking ??= this.tickOnce().finally(() => (this.ticking = null)));
  }

  async reserve(tenant: Tenant, req: { estimatedTokens: number }): Promise<ReserveResult> {
    const estimated = tokenCount(req.estimatedTokens, "estimatedTokens");
    this.known.add(tenant.id);
    if (this.mode === "redis") {
      try {
        return await this.reserveShared(tenant, estimated);
      } catch (err) {
        if (err instanceof ApiError) return { ok: false, error: err };
        this.unreachable(err);
      }
    }
    return this.reserveAlone(tenant, estimated);
  }

  async resize(tenant: Tenant, reservation: Reservation, tokens: number, releaseIfRefused = false): Promise<ApiError | null> {
    const exact = tokenCount(tokens, "tokens");
    const l = this.live.get(reservation.id);
    if (!l || l.held === exact) return null;
    if (l.local) {
      const error = l.local.ledger.resize(l.local.tenant, l.local.reservation, exact);
      if (!error) l.held = exact;
      // The shared books are released by the caller's cancel; the local ones at once (see Quota.resize).
      else if (releaseIfRefused) l.local.ledger.cancel(l.local.reservation);
      return error;
    }
    let reply: unknown;
    try {
      reply = await SCRIPTS.resize.run(this.redis, l.keys, [this.nowArg(), ...limitArgs(tenant.limits), exact, reservation.id, l.dayNumber, this.stateTtlMs]);
    } catch (err) {
      this.unreachable(err);
      // The request was admitted on the shared books; its exact size cannot be
      // checked now. Under "refuse" it is not run; under "local" it runs as admitted.
      if (this.fallback === "refuse") return quotaUnavailable("the shared rate-limit store is unreachable");
      l.held = exact;
      return null;
    }
    const r = reply as [string, string[]?, string[]?];
    if (r[0] === "no") {
      const now = parseSnapshot(r[1]!);
      const without = parseSnapshot(r[2]!);
      const rejection = decideAdmission(without, tenant.limits, exact, msUntilUtcMidnight(now.nowMs));
      if (!rejection) throw new Error("quota: Redis refused a resize that decideAdmission admits (scripts.ts and admission.ts disagree)");
      return rejectionError(tenant.id, rejection, rateLimitHeaders(tenant.limits, now.requests, now.tokens), this.queueRetryAfterMs);
    }
    l.held = exact;
    return null;
  }

  async started(reservation: Reservation): Promise<void> {
    const l = this.live.get(reservation.id);
    if (!l || l.phase === "running") return;
    l.phase = "running";
    if (l.local) return l.local.ledger.started(l.local.reservation);
    try {
      await SCRIPTS.started.run(this.redis, l.keys, [this.nowArg(), reservation.id, this.leaseMs, this.stateTtlMs]);
    } catch (err) {
      this.unreachable(err);
    }
  }

  async settle(reservation: Reservation, actualTokens: number): Promise<void> {
    const actual = tokenCount(actualTokens, "actualTokens");
    const l = this.live.get(reservation.id);
    if (!l) return;
    this.live.delete(reservation.id);
    if (l.local) return l.local.ledger.settle(l.local.reservation, actual);
    await this.finish(l, "settle", actual);
    // Whether or not Redis took it, the usage is history: the store has it once this resolves.
    await this.store?.add(reservation.tenantId, reservation.day, actual);
  }

  async cancel(reservation: Reservation): Promise<void> {
    const l = this.live.get(reservation.id);
    if (!l) return;
    this.live.delete(reservation.id);
    if (l.local) return l.local.ledger.cancel(l.local.reservation);
    await this.finish(l, "cancel", 0);
  }

  held(reservation: Reservation): number {
    return this.live.get(reservation.id)?.held ?? 0;
  }

  async headers(tenant: Tenant): Promise<RateLimitHeaders> {
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = tenant.limits;
    if (rpm === null && tpm === null) return {};
    if (this.mode === "redis") {
      try {
        const r = (await SCRIPTS.headers.run(this.redis, this.keysOf(tenant.id), [
          this.nowArg(),
          nullable(rpm),
          nullable(tpm),
          this.store ? "1" : "0",
          this.nextId(),
          this.stateTtlMs,
        ])) as string[];
        const [rd, ra, td, ta] = r.map(Number) as [number, number, number, number];
        return rateLimitHeaders(tenant.limits, { scaledDeficit: rd, atMs: ra }, { scaledDeficit: td, atMs: ta });
      } catch (err) {
        this.unreachable(err);
      }
    }
    const n = this.replicas ?? this.replicasSeen;
    return this.local && n !== null ? this.local.headers(tenant, n) : {};
  }

  async usage(tenantId: string): Promise<TenantUsage | null> {
    if (this.mode !== "redis") return this.local?.usage(tenantId) ?? null;
    try {
      const r = (await SCRIPTS.usage.run(this.redis, this.keysOf(tenantId), [this.nowArg()])) as string[] | null;
      if (!r) return null;
      const [day, dayTokens, lifetimeTokens, running, queued] = r.map(Number) as [number, number, number, number, number];
      return { day: utcDay(day * MS_PER_DAY), dayTokens, lifetimeTokens, running, queued };
    } catch (err) {
      this.unreachable(err);
      return this.local?.usage(tenantId) ?? null;
    }
  }

  /**
   * Drops a deleted tenant's shared state (every replica hears of the
   * deletion; deleting twice is harmless). Its requests in flight still
   * settle into the store; a tenant created again under the id starts from
   * the stored usage, as a restarted ledger would.
   */
  async forget(tenantId: string): Promise<void> {
    this.known.delete(tenantId);
    this.local?.forget(tenantId);
    try {
      await this.redis.del(...this.keysOf(tenantId));
    } catch (err) {
      this.unreachable(err);
    }
  }

  async retain(tenantIds: Iterable<string>): Promise<void> {
    const keep = new Set(tenantIds);
    await Promise.all([...this.known].filter((id) => !keep.has(id)).map((id) => this.forget(id)));
  }

  /** Stops the timer, leaves the replica count, and closes the connection (the reservations still live lapse with their leases). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    try {
      if (this.mode === "redis") await this.redis.zrem(this.replicasKey(), this.replicaId);
    } catch {
      // Its heartbeat expires by itself.
    }
    this.gauge?.reset();
    if (this.ownsClient) this.redis.disconnect();
  }

  private async reserveShared(tenant: Tenant, estimated: number): Promise<ReserveResult> {
    const member = this.nextId();
    const keys = this.keysOf(tenant.id);
    const args: (string | number)[] = [
      this.nowArg(),
      ...limitArgs(tenant.limits),
      estimated,
      member,
      this.leaseMs,
      this.stateTtlMs,
      member,
      this.store ? "1" : "0",
      "0",
      "",
      0,
      0,
    ];
    let reply = (await SCRIPTS.reserve.run(this.redis, keys, args)) as [string, string[]?];
    if (reply[0] === "seed") {
      let stored: StoredUsage | null;
      try {
        stored = await this.store!.usageOf(tenant.id);
      } catch (err) {
        this.log?.error({ err: (err as Error).message, tenant: tenant.id }, "reading a tenant's stored usage for its quota failed");
        throw quotaUnavailable("the usage store is unreachable");
      }
      args.splice(13, 4, "1", stored ? dayNumberOf(stored.day) : "", stored?.dayTokens ?? 0, stored?.lifetimeTokens ?? 0);
      reply = (await SCRIPTS.reserve.run(this.redis, keys, args)) as [string, string[]?];
      if (reply[0] === "seed") throw new Error("quota: Redis asked for the stored usage twice");
    }
    const snap = parseSnapshot(reply[1]!);
    const headers = rateLimitHeaders(tenant.limits, snap.requests, snap.tokens);
    if (reply[0] === "no") {
      const rejection = decideAdmission(snap, tenant.limits, estimated, msUntilUtcMidnight(snap.nowMs));
      if (!rejection) throw new Error("quota: Redis refused a request that decideAdmission admits (scripts.ts and admission.ts disagree)");
      return { ok: false, error: rejectionError(tenant.id, rejection, headers, this.queueRetryAfterMs) };
    }
    const reservation: Reservation = { id: member, tenantId: tenant.id, estimatedTokens: estimated, day: utcDay(snap.nowMs) };
    this.live.set(member, {
      reservation,
      phase: "queued",
      keys,
      dayNumber: Math.floor(snap.nowMs / MS_PER_DAY),
      held: estimated,
      epoch: snap.epoch,
      local: null,
    });
    return { ok: true, reservation, headers };
  }

  /** Redis is out of reach: refuse, or decide on this replica's share of the limits. */
  private async reserveAlone(tenant: Tenant, estimated: number): Promise<ReserveResult> {
    if (this.fallback === "refuse") return { ok: false, error: quotaUnavailable("the shared rate-limit store is unreachable") };
    const n = this.replicas ?? this.replicasSeen;
    if (n === null) return { ok: false, error: quotaUnavailable("the shared rate-limit store is unreachable and the number of replicas is unknown") };
    this.local ??= new LocalShare({ now: this.clock ?? Date.now, store: this.store, queueRetryAfterMs: this.queueRetryAfterMs });
    const result = await this.local.reserve(tenant, estimated, n);
    if (!result.ok) return result;
    const reservation: Reservation = { ...result.reservation, id: this.nextId() };
    this.live.set(reservation.id, {
      reservation,
      phase: "queued",
      keys: [],
      dayNumber: dayNumberOf(reservation.day),
      held: estimated,
      epoch: "",
      local: { ledger: result.ledger, tenant: result.share, reservation: result.reservation },
    });
    return { ok: true, reservation, headers: result.headers };
  }

  private async finish(l: Live, how: "settle" | "cancel", actual: number): Promise<void> {
    const r = l.reservation;
    try {
      await SCRIPTS.finish.run(this.redis, l.keys, [this.nowArg(), how, actual, l.held, r.id, l.dayNumber, l.epoch, this.stateTtlMs]);
    } catch (err) {
      // Its place lapses with its lease; its charge stays in the shared books.
      this.unreachable(err);
    }
  }

  private async tickOnce(): Promise<void> {
    try {
      const alive = Number(await SCRIPTS.heartbeat.run(this.redis, [this.replicasKey()], [this.nowArg(), this.replicaId, Math.max(3 * this.leaseMs, 3000)]));
      this.replicasSeen = alive;
      if (this.mode !== "redis") this.reachable();
      await this.renew();
    } catch (err) {
      this.unreachable(err);
    }
  }

  /** Pushes out the leases of every reservation this replica holds in Redis, one script per tenant. */
  private async renew(): Promise<void> {
    const byTenant = new Map<string, Live[]>();
    for (const l of this.live.values()) {
      if (l.local) continue;
      const list = byTenant.get(l.reservation.tenantId) ?? [];
      list.push(l);
      byTenant.set(l.reservation.tenantId, list);
    }
    await Promise.all(
      [...byTenant.values()].map((ls) =>
        SCRIPTS.renew.run(this.redis, ls[0]!.keys, [this.nowArg(), this.leaseMs, this.stateTtlMs, ...ls.flatMap((l) => [l.reservation.id, l.phase])]),
      ),
    );
  }

  private unreachable(err: unknown): void {
    if (this.mode !== "redis" || this.closed) return;
    this.mode = this.fallback;
    // Each outage starts its own books: counters of an earlier one are stale.
    this.local = null;
    this.setGauge();
    const n = this.replicas ?? this.replicasSeen;
    this.log?.warn(
      { err: (err as Error)?.message ?? String(err), mode: this.mode, ...(this.fallback === "local" ? { replicas: n } : {}) },
      this.fallback === "local"
        ? n === null
          ? "Redis unreachable: quota falls back to local limits, but the replica count is unknown, so requests are refused until Redis returns (set --redis-replicas)"
          : `Redis unreachable: quota falls back to local limits (each limit ÷ ${n} replicas)`
        : "Redis unreachable: requests are refused (503 quota_unavailable) until it returns",
    );
  }

  private reachable(): void {
    const was = this.mode;
    this.mode = "redis";
    this.setGauge();
    this.log?.info({ mode: "redis", was }, "Redis reachable again: quotas are shared across replicas again");
  }

  private setGauge(): void {
    if (!this.gauge) return;
    for (const m of ["redis", "local", "refuse"] as const) this.gauge.set({ mode: m }, m === this.mode ? 1 : 0);
  }

  private keysOf(tenantId: string): string[] {
    // One hash tag per tenant: a Redis Cluster keeps a tenant's keys on one node, as its scripts need.
    const base = `${this.prefix}{${tenantId}}`;
    return [`${base}:state`, `${base}:running`, `${base}:queued`, `${base}:held`];
  }

  private replicasKey(): string {
    return `${this.prefix}replicas`;
  }

  private nowArg(): string {
    return this.clock ? String(this.clock()) : "";
  }

  private nextId(): string {
    return `${this.replicaId}:${++this.counter}`;
  }
}

function dayNumberOf(day: string): number {
  return Math.floor(Date.parse(`${day}T00:00:00Z`) / MS_PER_DAY);
}

function tokenCount(n: number, name: string): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${n}`);
  return Math.ceil(n);
}
