// Fair sharing of the engine among tenants: the virtual token counter (VTC) of
// Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024).
// Pure functions over plain data; the engine owns the state and feeds it back.
//
// Each tenant has a counter of the service it received, in virtual tokens:
// inputCost per prompt token evaluated plus outputCost per token sampled,
// divided by the tenant's weight. Admission always serves the backlogged
// tenant with the smallest counter, so over any busy period the weighted
// service of backlogged tenants stays within a bounded distance of each other.
//
// Invariants:
//   - counters only grow;
//   - a tenant that becomes active (a request waiting or running) after being
//     idle is lifted to the smallest counter among the tenants active then, or
//     to `floor` when none is: an idle tenant cannot bank credit and later
//     starve tenants that kept the engine busy meanwhile;
//   - `priority` orders requests within one tenant, never across tenants.
import { DEFAULT_FAIRNESS_COSTS, DEFAULT_TENANT_POLICY, type FairnessCosts, type TenantPolicy } from "./protocol.js";

/** Tenant id → policy. Tenants not in it get DEFAULT_TENANT_POLICY. */
export type TenantPolicies = ReadonlyMap<string, TenantPolicy>;

export interface FairnessState {
  /** Tenant id → weighted virtual tokens served. A tenant never seen counts as 0. */
  counters: ReadonlyMap<string, number>;
  /**
   * The counter of the last tenant to go idle when the engine emptied: a tenant
   * arriving at an idle engine is lifted to it (the paper's "last client left").
   */
  floor: number;
}

export const INITIAL_FAIRNESS: FairnessState = { counters: new Map(), floor: 0 };

export interface TenantCharge {
  tenant: string;
  inputTokens: number;
  outputTokens: number;
}

/** The minimal shape of a waiting request the fair order needs. */
export interface FairItem {
  tenant: string;
  /** Higher first within the tenant; default 0. */
  priority?: number;
  promptTokens: readonly unknown[];
}

export function policyFor(policies: TenantPolicies | undefined, tenant: string): TenantPolicy {
  return policies?.get(tenant) ?? { id: tenant, ...DEFAULT_TENANT_POLICY };
}

export function counterOf(counters: ReadonlyMap<string, number>, tenant: string): number {
  return counters.get(tenant) ?? 0;
}

/** Virtual tokens a tenant pays for this much service. */
export function cost(inputTokens: number, outputTokens: number, policy: Pick<TenantPolicy, "weight">, costs: FairnessCosts = DEFAULT_FAIRNESS_COSTS): number {
  return (inputTokens * costs.inputCost + outputTokens * costs.outputCost) / policy.weight;
}

/** Charges one tenant for service received. */
export function charge(
  state: FairnessState,
  tenant: string,
  inputTokens: number,
  outputTokens: number,
  policy: Pick<TenantPolicy, "weight">,
  costs: FairnessCosts = DEFAULT_FAIRNESS_COSTS,
): FairnessState {
  const counters = new Map(state.counters);
  counters.set(tenant, counterOf(counters, tenant) + cost(inputTokens, outputTokens, policy, costs));
  return { ...state, counters };
}

/** Charges several tenants at once (one engine step), copying the counters once. */
export function chargeAll(
  state: FairnessState,
  charges: Iterable<TenantCharge>,
  policies: TenantPolicies | undefined,
  costs: FairnessCosts = DEFAULT_FAIRNESS_COSTS,
): FairnessState {
  const counters = new Map(state.counters);
  for (const c of charges) {
    counters.set(c.tenant, counterOf(counters, c.tenant) + cost(c.inputTokens, c.outputTokens, policyFor(policies, c.tenant), costs));
  }
  return { ...state, counters };
}

/**
 * A tenant goes from idle to active. `othersActive`: the other tenants with a
 * request waiting or running at this moment.
 */
export function activate(state: FairnessState, tenant: string, othersActive: Iterable<string>): FairnessState {
  let target = Infinity;
  for (const other of othersActive) if (other !== tenant) target = Math.min(target, counterOf(state.counters, other));
  if (target === Infinity) target = state.floor;
  if (counterOf(state.counters, tenant) >= target) return state;
  const counters = new Map(state.counters);
  counters.set(tenant, target);
  return { ...state, counters };
}

/** A tenant goes idle (its last request ended). When it was the last active tenant, its counter becomes the floor. */
export function deactivate(state: FairnessState, tenant: string, othersActive: Iterable<string>): FairnessState {
  for (const other of othersActive) if (other !== tenant) return state;
  return { ...state, floor: Math.max(state.floor, counterOf(state.counters, tenant)) };
}

/**
 * Yields waiting requests in fair order, one admission at a time, so that the
 * caller can tell it what each admission will really cost (prefix reuse makes
 * a prompt cheaper than its length) and skip tenants that cannot be admitted.
 *
 * Order: the tenant with the smallest counter, plus what this plan already
 * gave it; ties go to the tenant whose next request arrived first. Within a
 * tenant: priority (higher first), then arrival (position in `waiting`).
 */
export class FairPicker<W extends FairItem> {
  private readonly queues = new Map<string, Array<{ item: W; arrival: number }>>();
  private readonly projected = new Map<string, number>();

  constructor(
    waiting: readonly W[],
    counters: ReadonlyMap<string, number>,
    private readonly policies: TenantPolicies | undefined,
    private readonly costs: FairnessCosts = DEFAULT_FAIRNESS_COSTS,
  ) {
    waiting.forEach((item, arrival) => {
      let q = this.queues.get(item.tenant);
      if (!q) {
        q = [];
        this.queues.set(item.tenant, q);
        this.projected.set(item.tenant, counterOf(counters, item.tenant));
      }
      q.push({ item, arrival });
    });
    // Reversed, so the head is popped from the end in O(1).
    for (const q of this.queues.values()) q.sort((a, b) => (a.item.priority ?? 0) - (b.item.priority ?? 0) || b.arrival - a.arrival);
  }

  /** The next request to admit, or undefined when none is left. */
  peek(): W | undefined {
    let bestTenant: string | undefined;
    let bestCounter = Infinity;
    let bestArrival = Infinity;
    for (const [tenant, q] of this.queues) {
      const head = q[q.length - 1]!;
      const counter = this.projected.get(tenant)!;
      if (counter < bestCounter || (counter === bestCounter && head.arrival < bestArrival)) {
        bestTenant = tenant;
        bestCounter = counter;
        bestArrival = head.arrival;
      }
    }
    if (bestTenant === undefined) return undefined;
    const q = this.queues.get(bestTenant)!;
    return q[q.length - 1]!.item;
  }

  /** The request from peek() is admitted and will evaluate `inputTokens` prompt tokens. */
  take(inputTokens: number): void {
    const head = this.peek();
    if (!head) return;
    const q = this.queues.get(head.tenant)!;
    q.pop();
    if (q.length === 0) this.queues.delete(head.tenant);
    const policy = policyFor(this.policies, head.tenant);
    this.projected.set(head.tenant, this.projected.get(head.tenant)! + cost(inputTokens, 0, policy, this.costs));
  }

  /** None of this tenant's requests can be admitted now (slot cap, reservations). */
  skipTenant(tenant: string): void {
    this.queues.delete(tenant);
  }
}

/**
 * The whole waiting list in fair admission order, assuming each admission
 * evaluates its whole prompt. For inspection and tests; planStep drives a
 * FairPicker itself, with the real cost of every admission.
 */
export function orderWaiting<W extends FairItem>(
  waiting: readonly W[],
  counters: ReadonlyMap<string, number>,
  policies?: TenantPolicies,
  costs: FairnessCosts = DEFAULT_FAIRNESS_COSTS,
): W[] {
  const picker = new FairPicker(waiting, counters, policies, costs);
  const out: W[] = [];
  for (let w = picker.peek(); w; w = picker.peek()) {
    out.push(w);
    picker.take(w.promptTokens.length);
  }
  return out;
}
