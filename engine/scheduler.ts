// Step planning: a pure function from the engine's state to what the next
// decode should contain. The step loop (engineCore.ts) carries the plan out
// and decides nothing of its own: each admission says where its cached
// prompt comes from (the slot's own cache, a saved state, a copy of a fork
// leader's, or nothing) and whose evicted cache is saved first, and each
// prefill chunk says how many tokens it reads and whether it ends the prompt.
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
//   - priority classes (batch work, the Batch API): a "batch" request runs
//     only on capacity interactive requests leave free. Interactive requests
//     are planned first (their prefill before any batch prefill); a batch
//     request is admitted only when no interactive request is still waiting
//     for a slot, and at most maxBatchSlots batch requests run at once. An
//     interactive request that finds every slot taken while batch requests
//     hold some preempts one (the batch request with the least work done,
//     ended at this step boundary; its caller retries it), so batch work never
//     delays an interactive admission by more than this one step.

import { counterOf, FairPicker, type TenantPolicies } from "./fairness.js";
import { chooseRestore, type SavedStateView } from "./kvIndex.js";
import type { FairnessCosts } from "./protocol.js";
import { chooseSlot, type SlotView, type Token } from "./slots.js";

export interface WaitingView {
  id: string;
  tenant: string;
  /** Higher first within the tenant; default 0. */
  priority?: number;
  promptTokens: readonly Token[];
  /**
   * A running request whose KV state the request may copy at admission (a
   * choice of an n > 1 request copying its leader, fork.ts): its first
   * `tokens` prompt tokens are then not evaluated. The slot's own cache
   * serves instead when it keeps more.
   */
  copy?: CopySource;
  /** Priority class: batch requests run only on capacity interactive ones leave free. Default false (interactive). */
  batch?: boolean;
}

export interface CopySource {
  /** The running request copied from, and the slot that holds its state. */
  leader: string;
  fromSlot: number;
  tokens: number;
}

export interface RunningView {
  id: string;
  /** Prompt tokens not yet evaluated; 0 once the request is decoding. */
  prefillRemaining: number;
  /** Needed for newcomer-first steps (below); without it they never happen. */
  tenant?: string;
  /** A batch-class request (WaitingView.batch); default false. */
  batch?: boolean;
  /** The slot it holds: needed to preempt it for an interactive request (a batch request without one is never preempted). */
  slotIndex?: number;
  /** Tokens generated so far: the batch request with the fewest is preempted first. */
  generatedTokens?: number;
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
  /** Most batch-class requests running at once; absent: as many as there are slots. */
  maxBatchSlots?: number;
  /**
   * The saved KV states (kvIndex.ts), when there is a store: an admission may
   * restore one, and what it evicts from its slot is saved first. Absent: no
   * store, evicted caches are simply lost.
   */
  saved?: Iterable<SavedStateView>;
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

/**
 * Where an admission's first prompt tokens come from; the rest of the prompt
 * is evaluated. The slot ends up holding exactly the tokens it serves.
 */
export type AdmissionSource =
  /** Nothing: the slot is cleared. */
  | { kind: "fresh" }
  /** The slot's own cache: its first `keepTokens` tokens are kept, the rest erased. */
  | { kind: "slot"; keepTokens: number }
  /** Saved state `stateId` is loaded into the slot, which keeps its first `tokens` tokens. */
  | { kind: "restore"; stateId: string; tokens: number }
  /** The running request `leader`'s first `tokens` tokens are copied from slot `fromSlot`. */
  | ({ kind: "copy" } & CopySource);

export interface Admission {
  id: string;
  slotIndex: number;
  /** Prompt tokens the slot's own cache could serve (chooseSlot). */
  reuseTokens: number;
  source: AdmissionSource;
  /**
   * With a store: the tenant the slot's cache belongs to, whose tokens the
   * source does not keep are saved before they are overwritten (the store
   * decides whether they are worth it, kvIndex.ts decideSave).
   */
  saveFor?: string;
}

/** Prompt tokens an admission's source serves. */
export function servedTokens(source: AdmissionSource): number {
  switch (source.kind) {
    case "fresh":
      return 0;
    case "slot":
      return source.keepTokens;
    case "restore":
    case "copy":
      return source.tokens;
  }
}

export interface PrefillChunk {
  id: string;
  /** The next `tokens` prompt tokens, counted from what the request holds (after its admission's source, for a new one). */
  tokens: number;
  /** The chunk ends the prompt: its last position is sampled. */
  final: boolean;
}

export interface StepPlan {
  admit: Admission[];
  prefill: PrefillChunk[];
  decode: string[];
  /** Batch requests to end before this step's admissions, so interactive ones take their slots (absent: none). */
  preempt?: string[];
}

export function planStep(input: SchedulerInput): StepPlan {
  let decode = input.running.filter((r) => r.prefillRemaining === 0).map((r) => r.id);
  let budget = input.stepTokens - decode.length;
  const prefill: PrefillChunk[] = [];
  const allot = (id: string, remaining: number): void => {
    const tokens = Math.min(remaining, budget);
    if (tokens <= 0) return;
    budget -= tokens;
    prefill.push({ id, tokens, final: tokens === remaining });
  };
  const interactiveWaiting = input.waiting.filter((w) => !w.batch);
  const batchWaiting = input.waiting.filter((w) => w.batch);
  // Without batch requests the plan is exactly the single-class one.
  const twoClasses = batchWaiting.length > 0 || input.running.some((r) => r.batch);

  // Interactive prompts are read before any batch prompt, running or new.
  for (const r of input.running) if (!r.batch && r.prefillRemaining > 0) allot(r.id, r.prefillRemaining);

  const admit: Admission[] = [];
  const preempt: string[] = [];
  const slots = input.slots.map((s) => ({ ...s }));
  /** Running batch requests that may be preempted, the least work done first. */
  const victims = input.running
    .filter((r) => r.batch && r.slotIndex !== undefined)
    .sort((a, b) => (a.generatedTokens ?? 0) - (b.generatedTokens ?? 0) || b.prefillRemaining - a.prefillRemaining);
  const preemptFor = (w: WaitingView): boolean => {
    for (const [i, v] of victims.entries()) {
      const slot = slots.find((s) => s.index === v.slotIndex);
      if (!slot) continue;
      // Only a slot the interactive request may take (caps, reservations) is worth freeing.
      const trial = slots.map((s) => (s === slot ? { ...s, busy: false } : s));
      if (!chooseSlot(trial, w.tenant, w.promptTokens, input.policies)) continue;
      victims.splice(i, 1);
      slot.busy = false;
      preempt.push(v.id);
      if (v.prefillRemaining === 0) {
        decode = decode.filter((id) => id !== v.id);
        budget++;
      }
      return true;
    }
    return false;
  };
  const admitFrom = (picker: Picker, cls: "interactive" | "batch", room: number): { blocked: boolean } => {
    for (let w = picker.peek(); w && budget > 0 && room > 0; w = picker.peek()) {
      const choice = chooseSlot(slots, w.tenant, w.promptTokens, input.policies);
      if (!choice) {
        if (!slots.some((s) => !s.busy)) {
          if (cls === "interactive" && preemptFor(w)) continue;
          return { blocked: true };
        }
        picker.skipTenant(w.tenant);
        continue;
      }
      const slot = slots.find((s) => s.index === choice.index);
      const holder = slot?.tenant ?? null;
      // The slot now counts as held by this tenant for caps and reservations.
      if (slot) Object.assign(slot, { busy: true, tenant: w.tenant, cachedTokens: w.promptTokens });
      const source = sourceFor(w, choice.reuseTokens, preempt, input.saved);
      const inputTokens = w.promptTokens.length - servedTokens(source);
      picker.take(inputTokens);
      const admission: Admission = { id: w.id, slotIndex: choice.index, reuseTokens: choice.reuseTokens, source };
      if (input.saved && holder !== null) admission.saveFor = holder;
      admit.push(admission);
      allot(w.id, inputTokens);
      room--;
    }
    // Left over for lack of budget (or room) counts as blocked too: batch work waits behind it.
    return { blocked: picker.peek() !== undefined };
  };
  const pickerFor = (waiting: readonly WaitingView[]): Picker =>
    input.counters ? new FairPicker(waiting, input.counters, input.policies, input.costs) : fifoPicker(waiting);

  const interactive = admitFrom(pickerFor(twoClasses ? interactiveWaiting : input.waiting), "interactive", Infinity);
  if (twoClasses) {
    for (const r of input.running) if (r.batch && r.prefillRemaining > 0 && !preempt.includes(r.id)) allot(r.id, r.prefillRemaining);
    const batchRunning = input.running.filter((r) => r.batch).length - preempt.length;
    const room = (input.maxBatchSlots ?? slots.length) - batchRunning;
    if (!interactive.blocked && preempt.length === 0 && batchWaiting.length > 0) admitFrom(pickerFor(batchWaiting), "batch", room);
  }
  const plan: StepPlan = preempt.length > 0 ? { admit, prefill, decode, preempt } : { admit, prefill, decode };
  return newcomerFirst(input, plan);
}

/**
 * What serves an admission's first prompt tokens: a copy of its leader's
 * state when that spares more than the slot's own cache (and the leader is
 * not preempted in this very step); else a saved state that spares enough
 * more than the slot's cache to pay for its load (kvIndex.ts chooseRestore);
 * else the slot's cache as far as it serves the prompt; else nothing.
 */
function sourceFor(w: WaitingView, slotReuse: number, preempted: readonly string[], saved: Iterable<SavedStateView> | undefined): AdmissionSource {
  if (w.copy && w.copy.tokens > slotReuse && !preempted.includes(w.copy.leader)) return { kind: "copy", ...w.copy };
  const restore = saved ? chooseRestore(saved, w.tenant, w.promptTokens, slotReuse) : null;
  if (restore) return { kind: "restore", stateId: restore.id, tokens: restore.reuseTokens };
  return slotReuse > 0 ? { kind: "slot", keepTokens: slotReuse } : { kind: "fresh" };
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
