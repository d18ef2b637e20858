// Which saved KV states to keep, restore and evict: pure functions over plain
// data. kvStore.ts does the file I/O around these decisions.
//
// A saved state is one slot's KV cache at the moment it was evicted: the
// tenant it belongs to and the exact tokens it holds. A new request may
// restore the state whose tokens share the longest prefix with its prompt,
// and only its own tenant's states are ever candidates.
import { commonPrefixLength, reusableTokens, type Token } from "./slots.js";

export interface SavedStateView {
  id: string;
  tenant: string;
  tokens: readonly Token[];
  bytes: number;
  /** Monotonic stamp of the last save or restore; lower is older. */
  lastUsed: number;
}

/** Below this many tokens a state is cheaper to recompute than to write out and read back. */
export const MIN_SAVED_TOKENS = 32;
/** A restore must spare at least this many prompt tokens over what the chosen slot already reuses. */
export const MIN_RESTORE_GAIN_TOKENS = 16;

export interface RestoreChoice {
  id: string;
  /** Prompt tokens the restored state serves (its common prefix with the prompt, less the last prompt token). */
  reuseTokens: number;
}

/** The tenant's saved state that spares the most prompt tokens, if it beats `slotReuse` by enough to pay for the load. */
export function chooseRestore(saved: Iterable<SavedStateView>, tenant: string, prompt: readonly Token[], slotReuse: number): RestoreChoice | null {
  let best: RestoreChoice | null = null;
  for (const s of saved) {
    if (s.tenant !== tenant) continue;
    const reuse = reusableTokens(s.tokens, prompt);
    if (best === null || reuse > best.reuseTokens) best = { id: s.id, reuseTokens: reuse };
  }
  return best !== null && best.reuseTokens - slotReuse >= MIN_RESTORE_GAIN_TOKENS ? best : null;
}

export type SaveDecision =
  | { kind: "skip" }
  /** Write the state; the listed states hold a prefix of it and become redundant. */
  | { kind: "save"; supersedes: string[] };

/**
 * Whether a slot about to lose `lostTokens` of its cache (`cached` in all)
 * should be written out first. Not when little would be lost, nor when a
 * saved state of the tenant already holds all of it (a restored conversation
 * that did not move on); a state that `cached` extends is superseded.
 */
export function decideSave(saved: Iterable<SavedStateView>, tenant: string, cached: readonly Token[], lostTokens: number): SaveDecision {
  if (lostTokens < MIN_SAVED_TOKENS || cached.length < MIN_SAVED_TOKENS) return { kind: "skip" };
  const supersedes: string[] = [];
  for (const s of saved) {
    if (s.tenant !== tenant) continue;
    const common = commonPrefixLength(s.tokens, cached);
    if (common === cached.length) return { kind: "skip" };
    if (common === s.tokens.length) supersedes.push(s.id);
  }
  return { kind: "save", supersedes };
}

/** Least recently used states to delete so that the rest fit in `maxBytes` (after adding `incomingBytes`). */
export function evictionsFor(saved: Iterable<SavedStateView>, maxBytes: number, incomingBytes = 0): string[] {
  const byAge = [...saved].sort((a, b) => a.lastUsed - b.lastUsed);
  let total = incomingBytes + byAge.reduce((n, s) => n + s.bytes, 0);
  const out: string[] = [];
  for (const s of byAge) {
    if (total <= maxBytes) break;
    out.push(s.id);
    total -= s.bytes;
  }
  return out;
}
