// Slot choice: a pure function over plain data.
//
// A slot is one llama.cpp sequence that keeps its KV cache after a request
// ends. The choice maximises reuse without ever crossing tenants:
//   1. the caller's own idle slot whose cache shares the longest prefix with
//      the prompt, when that prefix keeps at least half of what the slot holds
//      (a tiny overlap is not worth destroying another conversation's cache);
//   2. otherwise a slot that holds nothing;
//   3. otherwise the least recently used idle slot (evicted, and reused as far
//      as its prefix allows when it is the caller's own), preferring slots
//      that other tenants do not need to fill their reservations.
// Within rules 2 and 3, slots next to busy ones come first (the most busy
// neighbours, then the first empty or the least recently used): a slot is a
// llama.cpp sequence, and llama.cpp reads the weights once per run of
// consecutive busy sequences in a decode (batchOrder.ts). Keeping the busy
// slots in one run keeps a step at one pass; a cache this evicts in place of
// an older one is saved to the KV store, when there is one, like any other
// (the plan's Admission.saveFor, scheduler.ts; carried out by engineCore.ts).
//
// Tenant policies (optional) bound the choice first:
//   - a tenant holding maxSlots busy slots gets none (its request waits);
//   - slots reserved for other tenants and not yet used by them are never
//     given away: the caller gets a slot only while more are idle than
//     sum over other tenants of max(0, reserved - held). Hence, as long as the
//     reservations add up to at most the slot count, every tenant can always
//     get up to its reservation, whatever the others do.
import { policyFor, type TenantPolicies } from "./fairness.js";
import type { TenantPolicy } from "./protocol.js";

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

/** Busy slots per tenant: the slots each tenant holds now. */
export function heldSlots(slots: readonly SlotView[]): Map<string, number> {
  const held = new Map<string, number>();
  for (const s of slots) if (s.busy && s.tenant !== null) held.set(s.tenant, (held.get(s.tenant) ?? 0) + 1);
  return held;
}

/** A reservation beyond the tenant's own cap could never be used. */
function effectiveReservation(p: TenantPolicy): number {
  return Math.min(p.reservedSlots, p.maxSlots ?? Infinity);
}

/** Slots the other tenants may still claim for their reservations. */
export function reservedForOthers(
  slots: readonly SlotView[],
  tenant: string,
  policies: TenantPolicies | undefined,
  held: ReadonlyMap<string, number> = heldSlots(slots),
): number {
  if (!policies) return 0;
  let reserved = 0;
  for (const p of policies.values()) {
    if (p.id !== tenant) reserved += Math.max(0, effectiveReservation(p) - (held.get(p.id) ?? 0));
  }
  return reserved;
}

/**
 * Idle slots other tenants need for their reservations: for each tenant short
 * of its reservation by d, its d most recently used idle slots. Evicting them
 * would cost that tenant its cache when it claims the reservation.
 */
function protectedSlots(slots: readonly SlotView[], tenant: string, policies: TenantPolicies | undefined, held: ReadonlyMap<string, number>): Set<number> {
  const out = new Set<number>();
  if (!policies) return out;
  for (const p of policies.values()) {
    if (p.id === tenant) continue;
    const deficit = effectiveReservation(p) - (held.get(p.id) ?? 0);
    if (deficit <= 0) continue;
    slots
      .filter((s) => !s.busy && s.tenant === p.id && s.cachedTokens.length > 0)
      .sort((a, b) => b.lastUsed - a.lastUsed)
      .slice(0, deficit)
      .forEach((s) => {
        out.add(s.index);
      });
  }
  return out;
}

/** Null when no idle slot may be given to `tenant` now (none idle, its cap reached, or the rest reserved). */
export function chooseSlot(slots: readonly SlotView[], tenant: string, prompt: readonly Token[], policies?: TenantPolicies): SlotChoice | null {
  const held = heldSlots(slots);
  if (policies) {
    const cap = policyFor(policies, tenant).maxSlots;
    if (cap !== null && (held.get(tenant) ?? 0) >= cap) return null;
    const idle = slots.reduce((n, s) => n + (s.busy ? 0 : 1), 0);
    if (idle <= reservedForOthers(slots, tenant, policies, held)) return null;
  }
  const keep = protectedSlots(slots, tenant, policies, held);
  const busy = new Set(slots.filter((s) => s.busy).map((s) => s.index));
  const neighbours = (s: SlotView) => (busy.has(s.index - 1) ? 1 : 0) + (busy.has(s.index + 1) ? 1 : 0);
  // Fewer runs first; then, for empty slots, the first one, and for full ones the least recently used.
  const better = (a: SlotView, b: SlotView | null, byAge: boolean) =>
    b === null || neighbours(a) > neighbours(b) || (neighbours(a) === neighbours(b) && (byAge ? a.lastUsed < b.lastUsed : a.index < b.index));
  let best: SlotChoice | null = null;
  let empty: SlotView | null = null;
  let lru: SlotView | null = null;
  let lruUnprotected: SlotView | null = null;
  for (const slot of slots) {
    if (slot.busy) continue;
    if (slot.tenant === tenant && slot.cachedTokens.length > 0) {
      const reuse = reusableTokens(slot.cachedTokens, prompt);
      const worthIt = reuse > 0 && reuse * 2 >= slot.cachedTokens.length;
      if (worthIt && (best === null || reuse > best.reuseTokens)) best = { index: slot.index, reuseTokens: reuse };
    }
    if (slot.cachedTokens.length === 0 && better(slot, empty, false)) empty = slot;
    if (better(slot, lru, true)) lru = slot;
    if (!keep.has(slot.index) && better(slot, lruUnprotected, true)) lruUnprotected = slot;
  }
  if (best) return best;
  if (empty) return { index: empty.index, reuseTokens: 0 };
  const victim = lruUnprotected ?? lru;
  if (!victim) return null;
  const reuse = victim.tenant === tenant ? reusableTokens(victim.cachedTokens, prompt) : 0;
  return { index: victim.index, reuseTokens: reuse };
}
