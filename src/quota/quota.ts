// The seam between the routes and whatever keeps the tenants' quota books:
// the in-process QuotaLedger (the embedded default, one replica) or RedisQuota
// (several replicas sharing one Redis). Same lifecycle as the ledger's
// (reserve → resize → started → settle | cancel, see ledger.ts), async because
// a shared implementation answers over the network.
import type { ApiError } from "../errors.js";
import type { Tenant } from "../tenants/types.js";
import type { QuotaLedger, Reservation, ReserveResult, TenantUsage } from "./ledger.js";
import type { RateLimitHeaders } from "./rateLimitHeaders.js";

export type { Reservation, ReserveResult, TenantUsage } from "./ledger.js";

export interface Quota {
  /** Admits and charges a request, or says (as a 429, or a 503 when the books cannot be reached) which limit refuses it. */
  reserve(tenant: Tenant, req: { estimatedTokens: number }): Promise<ReserveResult>;
  /**
   * The reservation becomes `tokens` (the engine's exact bound), or the 429 it
   * would have had; null when done. With `releaseIfRefused`, a refused
   * reservation is cancelled in the same step, before any other request's
   * resize is decided (in process: atomically), so that in a burst whose
   * estimates were all too low the refused give their tokens back to the next.
   */
  resize(tenant: Tenant, reservation: Reservation, tokens: number, releaseIfRefused?: boolean): Promise<ApiError | null>;
  /** The engine started running the request (queued → running). Idempotent. */
  started(reservation: Reservation): Promise<void>;
  /** The request ended having used `actualTokens`; resolves once the usage is stored. Idempotent. */
  settle(reservation: Reservation, actualTokens: number): Promise<void>;
  /** The request never ran: refund it whole. Idempotent. */
  cancel(reservation: Reservation): Promise<void>;
  /** Tokens a live reservation holds now (0 once it is over). */
  held(reservation: Reservation): number;
  /** The x-ratelimit-* headers for the tenant now. */
  headers(tenant: Tenant): Promise<RateLimitHeaders>;
  /** Counters for admin views and tests; null for a tenant never seen. */
  usage(tenantId: string): Promise<TenantUsage | null>;
  /** Drops a deleted tenant's counters. */
  forget(tenantId: string): Promise<void>;
  /** Drops the counters of every tenant not listed. */
  retain(tenantIds: Iterable<string>): Promise<void>;
  /** Stops timers and connections. */
  close(): Promise<void>;
}

/** The in-process ledger behind the async seam: every call does its work before it returns. */
export class LocalQuota implements Quota {
  constructor(readonly ledger: QuotaLedger) {}

  // Each method runs the ledger synchronously and returns a settled promise;
  // a RangeError for nonsense counts becomes a rejection, as in any async call.
  async reserve(tenant: Tenant, req: { estimatedTokens: number }): Promise<ReserveResult> {
    return this.ledger.reserve(tenant, req);
  }

  async resize(tenant: Tenant, reservation: Reservation, tokens: number, releaseIfRefused = false): Promise<ApiError | null> {
    const error = this.ledger.resize(tenant, reservation, tokens);
    if (error && releaseIfRefused) this.ledger.cancel(reservation);
    return error;
  }

  async started(reservation: Reservation): Promise<void> {
    this.ledger.started(reservation);
  }

  settle(reservation: Reservation, actualTokens: number): Promise<void> {
    try {
      return this.ledger.settle(reservation, actualTokens);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async cancel(reservation: Reservation): Promise<void> {
    this.ledger.cancel(reservation);
  }

  held(reservation: Reservation): number {
    return this.ledger.held(reservation);
  }

  async headers(tenant: Tenant): Promise<RateLimitHeaders> {
    return this.ledger.headers(tenant);
  }

  async usage(tenantId: string): Promise<TenantUsage | null> {
    return this.ledger.usage(tenantId);
  }

  async forget(tenantId: string): Promise<void> {
    this.ledger.forget(tenantId);
  }

  async retain(tenantIds: Iterable<string>): Promise<void> {
    this.ledger.retain(tenantIds);
  }

  async close(): Promise<void> {}
}
