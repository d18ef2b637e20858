// Step planning: a pure function from the engine's state to what the next
// decode should contain. The step loop (engine.ts) carries the plan out.
//
// Invariants of a plan:
//   - every running request that has finished its prefill decodes exactly one
//     token (lockstep: all streams advance together, so ITL stays steady);
//   - decode tokens + prefill tokens <= stepTokens, so a long prompt is read
//     in chunks instead of stalling the running streams;
//   - a waiting request is admitted only when a slot may be given to its
//     tenant (chooseSlot: free, under the tenant's cap, not reserved for
//     others) and the step has budget left for at least part of its prompt;
//   - with tenant counters, admissions follow the fair order (fairness.ts):
//     the tenant with the smallest counter first, each admission raising its
//     tenant's counter by what its prompt will cost; priority orders only
//     within a tenant. A tenant that cannot get a slot is skipped for this
//     step, it does not block the others.

import { counterOf, FairPicker, type TenantPolicies } from "./fairness.js";
import type { FairnessCosts } from "./protocol.js";
import { chooseSlot, type SlotView, type Token } from "./slots.js";

export interface WaitingView {
  id: string;
  tenant: string;
  /** Higher first within the tenant; default 0. */
  priority?: number;
  promptTokens: readonly Token[];
  /**
   * Prompt tokens the request gets at admission by copying another running
   * request's KV state (a choice of an n > 1 request, fork.ts) rather than by
   * evaluating them; the slot's own reuse counts instead when it is larger.
   */
  sharedTokens?: number;
}

export interface RunningView {
  id: string;
  /** Prompt tokens not yet evaluated; 0 once the request is decoding. */
  prefillRemaining: number;
  /** Needed for newcomer-first steps (below); without it they never happen. */
  tenant?: string;
}

export interface SchedulerInput {
  /** In arrival order. */
  waiting: readonly WaitingView[];
  running: readonly RunningView[];
  slots: readonly SlotView[];
  stepTokens: number;
  /** Fair-scheduler counters (fairness.ts). Omitted: admissions are FIFO in `waiting` order. */
  counters?: ReadonlyMap<string, number>;
  /** Weights, reservations and caps; tenants not in it get the default policy. */
  policies?: TenantPolicies;
  costs?: FairnessCosts;
}

/** What planStep needs from an admission order. */
interface Picker {
  peek(): WaitingView | undefined;
  take(inputTokens: number): void;
  skipTenant(tenant: string): void;
}

/** Arrival order, skipping tenants that cannot be admitted. */
function fifoPicker(waiting: readonly WaitingView[]): Picker {
  let i = 0;
  const skipped = new Set<string>();
  const advance = () => {
    while (i < waiting.length && skipped.has(waiting[i]!.tenant)) i++;
  };
  return {
    peek: () => (advance(), waiting[i]),
    take: () => void (advance(), i++),
    skipTenant: (tenant) => void skipped.add(tenant),
  };
}

export interface Admission {
  id: string;
  slotIndex: number;
  reuseTokens: number;
}

export interface PrefillChunk {
  id: string;
  tokens: number;
  /** The chunk ends the prompt: its last position is sampled. */
  final: boolean;
}

export interface StepPlan {
  admit: Admission[];
  prefill: PrefillChunk[];
  decode: string[];
}

export function planStep(input: SchedulerInput): StepPlan {
  const decode = input.running.filter((r) => r.prefillRemaining === 0).map((r) => r.id);
  let budget = input.stepTokens - decode.length;
  const prefill: PrefillChunk[] = [];
  const allot = (id: string, remaining: number): void => {
    const tokens = Math.min(remaining, budget);
    if (tokens <= 0) return;
    budget -= tokens;
    prefill.push({ id, tokens, final: tokens === remaining });
  };

  for (const r of input.running) if (r.prefillRemaining > 0) allot(r.id, r.prefillRemaining);

  const admit: Admission[] = [];
  const slots = input.slots.map((s) => ({ ...s }));
  const picker: Picker = input.counters ? new FairPicker(input.waiting, input.counters, input.policies, input.costs) : fifoPicker(input.waiting);
  for (let w = picker.peek(); w && budget > 0; w = picker.peek()) {
    const choice = chooseSlot(slots, w.tenant, w.promptTokens, input.policies);
    if (!choice) {
      if (!slots.some((s) => !s.busy)) break;
      picker.skipTenant(w.tenant);
      continue;
    }
    const slot = slots.find((s) => s.index === choice.index);
    // The slot now counts as held by this tenant for caps and reservations.
    if (slot) Object.assign(slot, { busy: true, tenant: w.tenant, cachedTokens: w.promptTokens });
    const inputTokens = w.promptTokens.length - Math.max(choice.reuseTokens, w.sharedTokens ?? 0);
    picker.take(inputTokens);
    admit.push({ id: w.id, slotIndex: choice.index, reuseTokens: choice.reuseTokens });
    allot(w.id, inputTokens);
  }
  return newcomerFirst(input, { admit, prefill, decode });
}

/**
 * Least-served first, inside one step. The fair order decides who gets a slot,
 * but in a lockstep step the newcomer's prompt is still read together with
 * every other tenant's decodes, so its first token waits for a batch as large
 * as all of them (measured: 2.8x its TTFT alone with 15 foreign streams). So
 * when a prompt that completes in this step belongs to a tenant with nothing
 * decoding whose counter is no greater than every decoding tenant's, the step
 * reads prompts only and the decoding streams wait that one step. The rule
 * cannot starve anyone: each such step charges the newcomer its prompt, and it
 * fires again only while that tenant is not ahead of the decoding ones.
 */
function newcomerFirst(input: SchedulerInput, plan: StepPlan): StepPlan {
  const counters = input.counters;
  if (!counters || plan.decode.length === 0 || plan.prefill.length === 0) return plan;
  const tenantOf = new Map<string, string | undefined>(input.running.map((r) => [r.id, r.tenant]));
  for (const w of input.waiting) tenantOf.set(w.id, w.tenant);
  const decoding = new Set<string>();
  for (const id of plan.decode) {
    const tenant = tenantOf.get(id);
    if (tenant === undefined) return plan;
    decoding.add(tenant);
  }
  const floor = Math.min(...[...decoding].map((t) => counterOf(counters, t)));
  const newcomer = plan.prefill.some((c) => {
    const tenant = tenantOf.get(c.id);
    return c.final && tenant !== undefined && !decoding.has(tenant) && counterOf(counters, tenant) <= floor;
  });
  return newcomer ? { ...plan, decode: [] } : plan;
}
