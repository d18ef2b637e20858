// Slot choice: a pure function over plain data.
//
// A slot is one llama.cpp sequence that keeps its KV cache after a request
// ends. The choice maximises reuse without ever crossing tenants:
//   1. the caller's own idle slot whose cache shares the longest prefix with
//      the prompt, when that prefix keeps at least half of what the slot holds
//      (a tiny overlap is not worth destroying another conversation's cache);
//   2. otherwise a slot that holds nothing;
//   3. otherwise the least recently used idle slot (evicted, and reused as far
//      as its prefix allows when it is the caller's own).

export type Token = number;

export interface SlotView {
  index: number;
  /** Tenant whose tokens the slot holds; null when empty. */
  tenant: string | null;
  cachedTokens: readonly Token[];
  busy: boolean;
  /** Monotonic stamp of the last use; lower is older. */
  lastUsed: number;
}

export interface SlotChoice {
  index: number;
  /** Cached prompt tokens kept; the rest of the cache is erased. */
  reuseTokens: number;
}

export function commonPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Tokens of a cache that can serve `prompt`: at least one prompt token is always evaluated, to get logits. */
export function reusableTokens(cached: readonly Token[], prompt: readonly Token[]): number {
  return Math.min(commonPrefixLength(cached, prompt), Math.max(0, prompt.length - 1));
}

export function chooseSlot(slots: readonly SlotView[], tenant: string, prompt: readonly Token[]): SlotChoice | null {
  let best: SlotChoice | null = null;
  let empty: SlotView | null = null;
  let lru: SlotView | null = null;
  for (const slot of slots) {
    if (slot.busy) continue;
    if (slot.tenant === tenant && slot.cachedTokens.length > 0) {
      const reuse = reusableTokens(slot.cachedTokens, prompt);
      const worthIt = reuse > 0 && reuse * 2 >= slot.cachedTokens.length;
      if (worthIt && (best === null || reuse > best.reuseTokens)) best = { index: slot.index, reuseTokens: reuse };
    }
    if (slot.cachedTokens.length === 0 && empty === null) empty = slot;
    if (lru === null || slot.lastUsed < lru.lastUsed) lru = slot;
  }
  if (best) return best;
  if (empty) return { index: empty.index, reuseTokens: 0 };
  if (!lru) return null;
  const reuse = lru.tenant === tenant ? reusableTokens(lru.cachedTokens, prompt) : 0;
  return { index: lru.index, reuseTokens: reuse };
}
