// n > 1 choices share their prompt's KV state (protocol.ts ForkSpec): the
// leader (index 0) reads the prompt, the other members wait until it has, then
// start from a copy of its state. What a waiting member does is a pure
// decision (forkDecision); the copy itself is node-llama-cpp's
// (copyPromptState), guarded the way sampling.ts guards private shapes.
import type { LlamaContextSequence } from "node-llama-cpp";

/** The leader of a waiting member's group, as planning sees it; null when it is gone, cancelled, or its prompt differs. */
export type LeaderView = { state: "waiting" } | { state: "running"; evaluated: number };

export type ForkDecision =
  /** Kept out of this step's planning: its leader will soon have what it needs. */
  | { kind: "held" }
  /** Plannable; at admission its slot gets the leader's first `sharedTokens` prompt tokens by copy. */
  | { kind: "copy"; sharedTokens: number }
  /** Plannable as a request of its own (slot prefix reuse still applies). */
  | { kind: "solo" };

/**
 * What a waiting member of a fork group does this step. It shares all of the
 * prompt but the last token, which it must evaluate itself to get its own
 * logits. It waits only for a leader that is in the engine and not cancelled
 * (the caller passes null otherwise): a waiting leader is admitted before its
 * members (it arrived first, and held members take no slot), and a running one
 * reads its prompt in a bounded number of steps. So a member never waits on a
 * leader that will not come, whatever the slot count, caps or reservations.
 */
export function forkDecision(promptTokens: number, leader: LeaderView | null): ForkDecision {
  const shared = promptTokens - 1;
  if (leader === null || shared < 1) return { kind: "solo" };
  if (leader.state === "waiting" || leader.evaluated < shared) return { kind: "held" };
  return { kind: "copy", sharedTokens: shared };
}

type CopyState = (other: LlamaContextSequence, upToTokenIndex: number) => Promise<boolean>;

/**
 * node-llama-cpp 3.22.1 has no public way to share a prefix between sequences;
 * its internal LlamaContextSequence._copyStateFromOtherSequence (llama.cpp's
 * seq_cp, then the tail erased) is what its own LlamaDecisionContext uses.
 * Checked once at engine start so that an upgrade that drops it fails loudly
 * instead of silently computing every choice's prompt.
 */
export function assertCanCopyState(seq: LlamaContextSequence): void {
  const copy = (seq as unknown as { _copyStateFromOtherSequence?: unknown })._copyStateFromOtherSequence;
  if (typeof copy !== "function") {
    throw new Error("node-llama-cpp's LlamaContextSequence has no _copyStateFromOtherSequence: n > 1 choices cannot share their prompt's KV state");
  }
}

/**
 * Makes `target` hold `source`'s first `tokens` tokens. False when the copy
 * did not give exactly that (a failed native copy, or a model whose state
 * cannot be cut at a token, such as a recurrent one): `target` is then in an
 * unknown state and must be cleared before use.
 */
export async function copyPromptState(target: LlamaContextSequence, source: LlamaContextSequence, tokens: number): Promise<boolean> {
  const copy = (target as unknown as { _copyStateFromOtherSequence: CopyState })._copyStateFromOtherSequence;
  try {
    return (await copy.call(target, source, tokens)) === true && target.nextTokenIndex === tokens;
  } catch {
    return false;
  }
}
