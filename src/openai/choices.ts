// OpenAI's `n`: n choices per prompt. Each choice is its own engine request;
// the n of one prompt form a fork group (engine ForkSpec), so the engine
// computes their prompt once and seeds choice j with seed + j. Choices are
// numbered prompt by prompt, as OpenAI's: index = promptIndex × n + j.
import { randomUUID } from "node:crypto";
import type { EngineEvent, EngineRequest, Usage } from "../../engine/index.js";
import { fromEngineError } from "../errors.js";
import type { Admitted } from "./generation.js";

/** `n` copies of `req`, one per choice; with n = 1, `req` alone, unchanged. */
export function forkChoices(req: EngineRequest, n: number, group: string = randomUUID()): EngineRequest[] {
  if (n <= 1) return [req];
  return Array.from({ length: n }, (_, index) => ({ ...req, fork: { group, index } }));
}

/**
 * The usage of a whole request from its choices' usages, in choice order
 * (index = promptIndex × n + j). OpenAI bills each prompt once however many
 * choices it has: prompt and cached tokens come from each prompt's first
 * choice (the fork leader, which read it), completion tokens from every choice.
 */
export function requestUsage(usages: readonly Usage[], n: number): Usage {
  const total: Usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, queueMs: 0 };
  usages.forEach((u, i) => {
    total.completionTokens += u.completionTokens;
    // The request waited as long as its slowest choice did.
    total.queueMs = Math.max(total.queueMs!, u.queueMs ?? 0);
    if (i % n !== 0) return;
    total.promptTokens += u.promptTokens;
    total.cachedTokens += u.cachedTokens;
  });
  return total;
}

export type DeltaEvent = Extract<EngineEvent, { type: "delta" }>;

/**
 * Reads every choice's events at once, handing each delta to `onDelta` in
 * order per choice, the choices interleaved as the engine produces them.
 * Resolves once every choice has its final delta; rejects with the first
 * engine error (an ApiError), or when a choice's events end without one (a
 * cancel). After a rejection `onDelta` is called no more: the caller is about
 * to write the error frame, and nothing may follow it.
 */
export async function readChoices(choices: readonly Admitted[], onDelta: (choice: Admitted, ev: DeltaEvent) => Promise<void>): Promise<void> {
  let failed = false;
  const read = async (choice: Admitted): Promise<void> => {
    try {
      for await (const ev of choice.events) {
        if (failed) return;
        if (ev.type === "error") throw fromEngineError(ev.error);
        if (ev.type !== "delta") continue;
        await onDelta(choice, ev);
        if (ev.finish) return;
      }
      if (!failed) throw fromEngineError({ code: "engine_error", param: null, message: "The request was cancelled." });
    } catch (err) {
      failed = true;
      throw err;
    }
  };
  await Promise.all(choices.map(read));
}
