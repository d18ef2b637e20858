// The engine's fair-scheduling books: tenant policies, the virtual token
// counters and which tenants are active. State only; every decision is made by
// the pure functions of fairness.ts, which this class feeds.
import { activate, chargeAll, deactivate, INITIAL_FAIRNESS, type FairnessState, type TenantCharge, type TenantPolicies } from "./fairness.js";
import type { FairnessCosts, TenantPolicy } from "./protocol.js";

export class TenantLedger {
  private policyMap = new Map<string, TenantPolicy>();
  private state: FairnessState = INITIAL_FAIRNESS;
  /** Tenant → requests waiting or running. */
  private readonly active = new Map<string, number>();
  /** Service given during the current step, charged when it ends. */
  private readonly pending = new Map<string, TenantCharge>();

  constructor(private readonly costs: FairnessCosts) {}

  get policies(): TenantPolicies {
    return this.policyMap;
  }

  get counters(): ReadonlyMap<string, number> {
    return this.state.counters;
  }

  setPolicies(policies: readonly TenantPolicy[]): void {
    this.policyMap = new Map(policies.map((p) => [p.id, { ...p }]));
  }

  /** A request of `tenant` entered the engine; its first one makes the tenant active. */
  arrive(tenant: string): void {
    const n = (this.active.get(tenant) ?? 0) + 1;
    this.active.set(tenant, n);
    if (n === 1) this.state = activate(this.state, tenant, this.active.keys());
  }

  /** A request of `tenant` left the engine; its last one makes the tenant idle (returns true then). */
  leave(tenant: string): boolean {
    const n = (this.active.get(tenant) ?? 0) - 1;
    if (n > 0) {
      this.active.set(tenant, n);
      return false;
    }
    this.active.delete(tenant);
    this.state = deactivate(this.state, tenant, this.active.keys());
    return true;
  }

  /** O(1): called per prefill chunk and per sampled token. */
  charge(tenant: string, inputTokens: number, outputTokens: number): void {
    const c = this.pending.get(tenant);
    if (c) {
      c.inputTokens += inputTokens;
      c.outputTokens += outputTokens;
    } else this.pending.set(tenant, { tenant, inputTokens, outputTokens });
  }

  /** Ends a step: what it served goes onto the counters. */
  settle(): void {
    if (this.pending.size === 0) return;
    this.state = chargeAll(this.state, this.pending.values(), this.policyMap, this.costs);
    this.pending.clear();
  }
}
