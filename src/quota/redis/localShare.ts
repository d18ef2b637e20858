// The books a replica keeps alone while Redis is out of reach under
// --redis-fallback local: an in-process QuotaLedger that enforces each
// tenant's share of its limits (replicaShare), its budgets counted from the
// usage stored when the tenant was first seen in this outage. One per outage.
import type { ApiError } from "../../errors.js";
import type { Tenant } from "../../tenants/types.js";
import { QuotaLedger, type Reservation, type TenantUsage } from "../ledger.js";
import type { RateLimitHeaders } from "../rateLimitHeaders.js";
import type { StoredUsage, UsageStore } from "../usageStore.js";
import { utcDay } from "../utcDay.js";
import { quotaUnavailable, replicaShare } from "./fallback.js";

export interface LocalShareOptions {
  now: () => number;
  store: UsageStore | null;
  queueRetryAfterMs: number;
}

export type ShareResult =
  | { ok: true; ledger: QuotaLedger; share: Tenant; reservation: Reservation; headers: RateLimitHeaders }
  | { ok: false; error: ApiError };

export class LocalShare {
  readonly ledger: QuotaLedger;
  private readonly now: () => number;
  private readonly store: UsageStore | null;
  /** Each tenant's usage when this replica began deciding for it alone. */
  private readonly base = new Map<string, StoredUsage>();

  constructor(o: LocalShareOptions) {
    this.now = o.now;
    this.store = o.store;
    this.ledger = new QuotaLedger({ now: o.now, store: o.store, queueRetryAfterMs: o.queueRetryAfterMs });
  }

  /** Admits `tenant` on its share of `replicas`, or refuses (429; 503 when its budgets need the store and it is unreachable). */
  async reserve(tenant: Tenant, estimatedTokens: number, replicas: number): Promise<ShareResult> {
    if (!this.base.has(tenant.id)) {
      let stored: StoredUsage | null = null;
      // Budgets need the usage so far; rates and caps start from zero.
      if (this.store && (tenant.limits.tokensPerDay !== null || tenant.limits.lifetimeTokens !== null)) {
        try {
          stored = await this.store.usageOf(tenant.id);
        } catch {
          return { ok: false, error: quotaUnavailable("the shared rate-limit store and the usage store are unreachable") };
        }
      }
      const today = utcDay(this.now());
      const base = { day: today, dayTokens: stored?.day === today ? stored.dayTokens : 0, lifetimeTokens: stored?.lifetimeTokens ?? 0 };
      // Another request of the tenant may have seeded it during the await.
      if (!this.base.has(tenant.id)) {
        this.base.set(tenant.id, base);
        this.ledger.seed(tenant.id, base);
      }
    }
    const share = this.shareOf(tenant, replicas)!;
    const result = this.ledger.reserve(share, { estimatedTokens });
    if (!result.ok) return result;
    return { ok: true, ledger: this.ledger, share, reservation: result.reservation, headers: result.headers };
  }

  /** The headers of a tenant this replica has decided for alone; none for one it has not. */
  headers(tenant: Tenant, replicas: number): RateLimitHeaders {
    const share = this.shareOf(tenant, replicas);
    return share ? this.ledger.headers(share) : {};
  }

  usage(tenantId: string): TenantUsage | null {
    return this.ledger.usage(tenantId);
  }

  forget(tenantId: string): void {
    this.ledger.forget(tenantId);
    this.base.delete(tenantId);
  }

  /** The tenant as this replica enforces it alone; null before it was first seen. */
  private shareOf(tenant: Tenant, replicas: number): Tenant | null {
    const base = this.base.get(tenant.id);
    return base ? { ...tenant, limits: replicaShare(tenant.limits, replicas, base) } : null;
  }
}
