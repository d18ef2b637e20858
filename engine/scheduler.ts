// Step planning: a pure function from the engine's state to what the next
// decode should contain. The step loop (engine.ts) carries the plan out.
//
// Invariants of a plan:
//   - every running request that has finished its prefill decodes exactly one
//     token (lockstep: all streams advance together, so ITL stays steady);
//   - decode tokens + prefill tokens <= stepTokens, so a long prompt is read
//     in chunks instead of stalling the running streams;
//   - a waiting request is admitted only when a slot is free and the step has
//     budget left for at least part of its prompt.

import { chooseSlot, type SlotView, type Token } from "./slots.js";

export interface WaitingView {
  id: string;
  tenant: string;
  promptTokens: readonly Token[];
}

export interface RunningView {
  id: string;
  /** Prompt tokens not yet evaluated; 0 once the request is decoding. */
  prefillRemaining: number;
}

export interface SchedulerInput {
  /** In service order. */
  waiting: readonly WaitingView[];
  running: readonly RunningView[];
  slots: readonly SlotView[];
  stepTokens: number;
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
  for (const w of input.waiting) {
    if (budget <= 0) break;
    const choice = chooseSlot(slots, w.tenant, w.promptTokens);
    if (!choice) break;
    const slot = slots.find((s) => s.index === choice.index);
    if (slot) slot.busy = true;
    admit.push({ id: w.id, slotIndex: choice.index, reuseTokens: choice.reuseTokens });
    allot(w.id, w.promptTokens.length - choice.reuseTokens);
  }
  return { admit, prefill, decode };
}
