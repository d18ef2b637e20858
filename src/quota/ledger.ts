// Per-tenant quotas: requests and tokens per minute (OpenAI's RPM/TPM
// buckets), concurrent and queued requests, tokens per UTC day and a lifetime
// token budget. The ledger holds the counters and does the I/O (clock, usage
// store); what to admit and what to answer are pure functions it calls.
//
// Lifecycle of a request, as the routes drive it:
//   reserve(tenant, {estimatedTokens})  before submitting to the engine
//     → charges 1 request + the estimate to every bucket and budget at once,
//       so concurrent requests cannot all pass on the same headroom;
//   resize(reservation, exactTokens)    once the engine has counted the prompt with
//     the served model's tokenizer: the reservation becomes that bound (prompt
//     + every token the request may generate), or the request is refused;
//   started(reservation)                when the engine admits it (queued → running);
//   settle(reservation, actualTokens)   when it ends, with the engine's usage;
//   cancel(reservation)                 when it never ran.
//
// cancel refunds everything, the request unit included: a request the engine
// refused before running (context too long, engine down) did no work, and
// OpenAI does not count requests it rejects against RPM either. A request that
// ran, even partly (client hung up mid-stream), is settled with what it used.
import type { ApiError } from "../errors.js";
import { DEFAULT_LIMITS, type Tenant, type TenantLimits } from "../tenants/types.js";
import { decideAdmission } from "./admission.js";
import { rateLimitHeaders, type RateLimitHeaders } from "./rateLimitHeaders.js";
import { rejectionError } from "./rejectionError.js";
import { charged, fullBucket, refilled, type Bucket } from "./tokenBucket.js";
import type { StoredUsage, UsageStore } from "./usageStore.js";
import { msUntilUtcMidnight, utcDay } from "./utcDay.js";

export interface Reservation {
  /** Unique among the reservations of one quota (a shared quota makes it unique across replicas). */
  readonly id: string;
  readonly tenantId: string;
  /** Tokens reserved at first (the pre-flight estimate); resize() may change what is held since. */
  readonly estimatedTokens: number;
  /** The UTC day whose budget was charged; the actual usage is recorded on it too. */
  readonly day: string;
}

export type ReserveResult = { ok: true; reservation: Reservation; headers: RateLimitHeaders } | { ok: false; error: ApiError };

export interface TenantUsage {
  day: string;
  dayTokens: number;
  lifetimeTokens: number;
  running: number;
  queued: number;
}

export interface QuotaLedgerOptions {
  /** Clock in ms since the epoch. */
  now?: () => number;
  /** Daily and lifetime usage survive restarts through this store: each settle adds to it. */
  store?: UsageStore | null;
  /** The store's usage at start (QuotaLedger.open loads it). */
  usage?: ReadonlyMap<string, StoredUsage>;
  /** Wait suggested to a tenant whose concurrency or queue cap is full. */
  queueRetryAfterMs?: number;
}

const DEFAULTS: Required<QuotaLedgerOptions> = { now: Date.now, store: null, usage: new Map(), queueRetryAfterMs: 1000 };

interface TenantState {
  /** The limits the buckets were last refilled under. */
  limits: TenantLimits;
  requests: Bucket;
  tokens: Bucket;
  running: number;
  queued: number;
  day: string;
  /** Charged today: settled usage + estimates of requests still in flight. */
  dayTokens: number;
  lifetimeTokens: number;
}

interface Live {
  reservation: Reservation;
  /** Tokens charged for it now: the estimate, or what resize() set. */
  heldTokens: number;
  phase: "queued" | "running";
  // The state it was counted in: if the tenant is forgotten and comes back,
  // ending an old request must not decrement the new state's counters.
  state: TenantState;
}

export class QuotaLedger {
  private readonly now: () => number;
  private readonly store: UsageStore | null;
  private readonly queueRetryAfterMs: number;
  // Invariant: one entry per tenant that has used the API or has stored
  // usage, until forget()/retain() drops it; so memory follows the tenant list.
  private readonly tenants = new Map<string, TenantState>();
  // Reservations neither settled nor cancelled; bounded by requests in flight.
  private readonly live = new Map<string, Live>();
  private nextId = 1;

  constructor(options: QuotaLedgerOptions = {}) {
    const o = { ...DEFAULTS, ...options };
    this.now = o.now;
    this.store = o.store;
    this.queueRetryAfterMs = o.queueRetryAfterMs;
    for (const [tenantId, u] of o.usage) this.seed(tenantId, u);
  }

  /** A ledger that starts from the usage in `options.store`. */
  static async open(options: QuotaLedgerOptions = {}): Promise<QuotaLedger> {
    const usage = options.store ? await options.store.load() : new Map<string, StoredUsage>();
    return new QuotaLedger({ ...options, usage });
  }

  /** Starts a tenant the ledger has not seen from its stored usage (a tenant already seen keeps its counters). */
  seed(tenantId: string, u: StoredUsage): void {
    if (this.tenants.has(tenantId)) return;
    const nowMs = this.now();
    this.tenants.set(tenantId, {
      // Real limits arrive with the first reserve() or headers() call.
      limits: DEFAULT_LIMITS,
      requests: fullBucket(nowMs),
      tokens: fullBucket(nowMs),
      running: 0,
      queued: 0,
      day: u.day,
      dayTokens: u.dayTokens,
      lifetimeTokens: u.lifetimeTokens,
    });
  }

  /** Whether the ledger holds counters for the tenant. */
  has(tenantId: string): boolean {
    return this.tenants.has(tenantId);
  }

  /** Admits and charges a request, or says which limit refuses it. Charges nothing when refused. */
  reserve(tenant: Tenant, req: { estimatedTokens: number }): ReserveResult {
    const estimatedTokens = tokenCount(req.estimatedTokens, "estimatedTokens");
    const nowMs = this.now();
    const s = this.current(tenant, nowMs);
    const rejection = decideAdmission(s, s.limits, estimatedTokens, msUntilUtcMidnight(nowMs));
    if (rejection) {
      const headers = rateLimitHeaders(s.limits, s.requests, s.tokens);
      return { ok: false, error: rejectionError(tenant.id, rejection, headers, this.queueRetryAfterMs) };
    }
    s.requests = charged(s.requests, 1);
    s.tokens = charged(s.tokens, estimatedTokens);
    s.dayTokens += estimatedTokens;
    s.lifetimeTokens += estimatedTokens;
    s.queued += 1;
    const reservation: Reservation = { id: String(this.nextId++), tenantId: tenant.id, estimatedTokens, day: s.day };
    this.live.set(reservation.id, { reservation, heldTokens: estimatedTokens, phase: "queued", state: s });
    return { ok: true, reservation, headers: rateLimitHeaders(s.limits, s.requests, s.tokens) };
  }

  /**
   * Replaces what a live reservation holds with `tokens` (the request's exact
   * bound, counted by the engine): the difference is refunded or charged on
   * every token counter. Refused, changing nothing, when the request with
   * `tokens` instead of what it holds would not have been admitted (a budget,
   * a per-minute bucket or a request larger than the limit): the error is the
   * 429 it would have had. Null when done (or the reservation is over).
   */
  resize(tenant: Tenant, reservation: Reservation, tokens: number): ApiError | null {
    const exact = tokenCount(tokens, "tokens");
    const l = this.live.get(reservation.id);
    if (!l || l.heldTokens === exact) return null;
    const nowMs = this.now();
    const s = this.current(tenant, nowMs);
    // The books as if this request had not been reserved: the question is
    // whether it would have been admitted at its exact size.
    if (exact > l.heldTokens && s === l.state) {
      const without = {
        requests: charged(s.requests, -1),
        tokens: charged(s.tokens, -l.heldTokens),
        running: s.running - (l.phase === "running" ? 1 : 0),
        queued: s.queued - (l.phase === "queued" ? 1 : 0),
        dayTokens: s.day === reservation.day ? s.dayTokens - l.heldTokens : s.dayTokens,
        lifetimeTokens: s.lifetimeTokens - l.heldTokens,
      };
      const rejection = decideAdmission(without, s.limits, exact, msUntilUtcMidnight(nowMs));
      if (rejection) return rejectionError(tenant.id, rejection, rateLimitHeaders(s.limits, s.requests, s.tokens), this.queueRetryAfterMs);
    }
    const delta = exact - l.heldTokens;
    l.heldTokens = exact;
    const t = l.state;
    if (t.limits.tokensPerMinute !== null) t.tokens = charged(t.tokens, delta);
    if (t.day === reservation.day) t.dayTokens = Math.max(0, t.dayTokens + delta);
    t.lifetimeTokens = Math.max(0, t.lifetimeTokens + delta);
    return null;
  }

  /** The engine started running the request: it leaves the tenant's queue. Idempotent. */
  started(reservation: Reservation): void {
    const l = this.live.get(reservation.id);
    if (!l || l.phase === "running") return;
    l.phase = "running";
    l.state.queued -= 1;
    l.state.running += 1;
  }

  /**
   * The request ended having used `actualTokens` (prompt + completion): every
   * token counter moves by actual − estimated (a refund, or an extra charge
   * that may push a bucket below empty), and the usage is stored: resolves
   * once it is (at once for a ledger without a store). Idempotent.
   */
  settle(reservation: Reservation, actualTokens: number): Promise<void> {
    const actual = tokenCount(actualTokens, "actualTokens");
    const l = this.live.get(reservation.id);
    if (!l || !this.finish(reservation, actual - l.heldTokens)) return Promise.resolve();
    // After the in-memory update: if the store fails, the caller hears of it
    // and the counters still hold the charge.
    return this.store?.add(reservation.tenantId, reservation.day, actual) ?? Promise.resolve();
  }

  /** The request never ran: refund the request unit and every token. Idempotent. */
  cancel(reservation: Reservation): void {
    const l = this.live.get(reservation.id);
    if (l) this.finish(reservation, -l.heldTokens, -1);
  }

  /** Tokens a live reservation holds now (0 once it is over). */
  held(reservation: Reservation): number {
    return this.live.get(reservation.id)?.heldTokens ?? 0;
  }

  /** The x-ratelimit-* headers for the tenant now (none for unlimited dimensions). */
  headers(tenant: Tenant): RateLimitHeaders {
    const nowMs = this.now();
    const s = this.current(tenant, nowMs);
    return rateLimitHeaders(s.limits, s.requests, s.tokens);
  }

  /** Counters for admin views and tests; null for a tenant the ledger has not seen. */
  usage(tenantId: string): TenantUsage | null {
    const s = this.tenants.get(tenantId);
    if (!s) return null;
    const today = utcDay(this.now());
    const dayTokens = s.day === today ? s.dayTokens : 0;
    return { day: today, dayTokens, lifetimeTokens: s.lifetimeTokens, running: s.running, queued: s.queued };
  }

  /**
   * Drops a deleted tenant's state. Its requests in flight still settle into
   * the store, and its stored rows stay (usage is history): an id reused later
   * starts from zero in this process but from the stored totals after a restart.
   */
  forget(tenantId: string): void {
    this.tenants.delete(tenantId);
  }

  /** Drops the state of every tenant not in `tenantIds` (e.g. after loading the tenant list at start). */
  retain(tenantIds: Iterable<string>): void {
    const keep = new Set(tenantIds);
    for (const id of this.tenants.keys()) if (!keep.has(id)) this.tenants.delete(id);
  }

  /** The tenant's state brought to `nowMs` under its current limits, created on first use. */
  private current(tenant: Tenant, nowMs: number): TenantState {
    let s = this.tenants.get(tenant.id);
    if (!s) {
      s = {
        limits: tenant.limits,
        requests: fullBucket(nowMs),
        tokens: fullBucket(nowMs),
        running: 0,
        queued: 0,
        day: utcDay(nowMs),
        dayTokens: 0,
        lifetimeTokens: 0,
      };
      this.tenants.set(tenant.id, s);
    }
    // Refill under the limits that held until now, then adopt the new ones:
    // a changed limit applies from the moment the ledger sees it.
    s.requests = refilled(s.requests, s.limits.requestsPerMinute, nowMs);
    s.tokens = refilled(s.tokens, s.limits.tokensPerMinute, nowMs);
    s.limits = tenant.limits;
    s.requests = refilled(s.requests, s.limits.requestsPerMinute, nowMs);
    s.tokens = refilled(s.tokens, s.limits.tokensPerMinute, nowMs);
    const today = utcDay(nowMs);
    if (today > s.day) {
      s.day = today;
      s.dayTokens = 0;
    }
    return s;
  }

  /** Ends a live reservation, moving token counters by `tokenDelta` and the request bucket by `requestDelta`. */
  private finish(reservation: Reservation, tokenDelta: number, requestDelta = 0): boolean {
    const l = this.live.get(reservation.id);
    if (!l) return false;
    this.live.delete(reservation.id);
    const s = l.state;
    const nowMs = this.now();
    s.requests = refilled(s.requests, s.limits.requestsPerMinute, nowMs);
    s.tokens = refilled(s.tokens, s.limits.tokensPerMinute, nowMs);
    if (s.limits.requestsPerMinute !== null) s.requests = charged(s.requests, requestDelta);
    if (s.limits.tokensPerMinute !== null) s.tokens = charged(s.tokens, tokenDelta);
    // The day's counter moves only if the day it was charged on is still
    // today; after midnight yesterday's figure is history (it is in the store).
    if (s.day === reservation.day) s.dayTokens = Math.max(0, s.dayTokens + tokenDelta);
    s.lifetimeTokens = Math.max(0, s.lifetimeTokens + tokenDelta);
    if (l.phase === "queued") s.queued -= 1;
    else s.running -= 1;
    return true;
  }
}

function tokenCount(n: number, name: string): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${n}`);
  return Math.ceil(n);
}
