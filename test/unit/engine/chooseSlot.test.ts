// Slot choice (engine/slots.ts): prefix reuse within a tenant, never across tenants.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { TenantPolicies } from "../../../engine/fairness.js";
import type { TenantPolicy } from "../../../engine/protocol.js";
import { chooseSlot, commonPrefixLength, heldSlots, reservedForOthers, reusableTokens, type SlotView } from "../../../engine/slots.js";

const slot = (index: number, tenant: string | null, cachedTokens: readonly number[], lastUsed: number, busy = false): SlotView => ({
  index,
  tenant,
  cachedTokens,
  busy,
  lastUsed,
});
const empty = (index: number, lastUsed = 0): SlotView => slot(index, null, [], lastUsed);
const policies = (...ps: Array<Partial<TenantPolicy> & { id: string }>): TenantPolicies =>
  new Map(ps.map((p) => [p.id, { weight: 1, reservedSlots: 0, maxSlots: null, ...p }]));
const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("commonPrefixLength", () => {
  test("counts equal leading tokens", () => {
    assert.equal(commonPrefixLength([1, 2, 3], [1, 2, 4]), 2);
    assert.equal(commonPrefixLength([1, 2, 3], [1, 2, 3]), 3);
    assert.equal(commonPrefixLength([1, 2, 3], [1, 2, 3, 4, 5]), 3);
    assert.equal(commonPrefixLength([1, 2, 3, 4, 5], [1, 2]), 2);
  });

  test("is 0 for a first-token mismatch or an empty side", () => {
    assert.equal(commonPrefixLength([9, 2, 3], [1, 2, 3]), 0);
    assert.equal(commonPrefixLength([], [1]), 0);
    assert.equal(commonPrefixLength([1], []), 0);
    assert.equal(commonPrefixLength([], []), 0);
  });

  test("does not count matches after the first difference", () => {
    assert.equal(commonPrefixLength([1, 2, 0, 4, 5], [1, 2, 3, 4, 5]), 2);
  });
});

describe("reusableTokens", () => {
  test("an identical prompt still evaluates one token (reuse = prompt.length - 1)", () => {
    assert.equal(reusableTokens([1, 2, 3], [1, 2, 3]), 2);
    assert.equal(reusableTokens(seq(1, 100), seq(1, 100)), 99);
  });

  test("a cache longer than the prompt is capped at prompt.length - 1", () => {
    assert.equal(reusableTokens([1, 2, 3, 4, 5], [1, 2, 3]), 2);
  });

  test("a prompt that extends the cache reuses the whole cache", () => {
    assert.equal(reusableTokens([1, 2, 3], [1, 2, 3, 4]), 3);
  });

  test("partial overlap reuses only the common prefix", () => {
    assert.equal(reusableTokens([1, 2, 3, 4], [1, 2, 9, 9, 9]), 2);
  });

  test("degenerate prompts reuse nothing", () => {
    assert.equal(reusableTokens([1, 2, 3], [1]), 0);
    assert.equal(reusableTokens([1, 2, 3], []), 0);
    assert.equal(reusableTokens([], [1, 2, 3]), 0);
  });
});

describe("chooseSlot", () => {
  test("prefers the caller's own idle slot with the longest prefix over shorter ones and empty slots", () => {
    const slots = [slot(0, "a", [1, 2], 5), slot(1, "a", [1, 2, 3, 4], 1), empty(2)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 3, 4, 9]), { index: 1, reuseTokens: 4 });
  });

  test("the longest prefix wins regardless of slot order or recency", () => {
    const slots = [slot(0, "a", [1, 2, 3, 4, 5, 6], 1), slot(1, "a", [1, 2, 3], 100), slot(2, "a", [1, 2, 3, 4, 7], 50)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 3, 4, 5, 6, 7, 8]), { index: 0, reuseTokens: 6 });
    assert.deepEqual(chooseSlot([...slots].reverse(), "a", [1, 2, 3, 4, 5, 6, 7, 8]), { index: 0, reuseTokens: 6 });
  });

  test("an identical prompt reuses all but one token", () => {
    const slots = [slot(0, "a", [5, 6, 7, 8], 1), empty(1)];
    assert.deepEqual(chooseSlot(slots, "a", [5, 6, 7, 8]), { index: 0, reuseTokens: 3 });
  });

  test("never reuses another tenant's cache: an identical prompt from another tenant gets no reuse", () => {
    const cached = [1, 2, 3, 4, 5];
    // Only slot: another tenant's, evicted with nothing kept.
    assert.deepEqual(chooseSlot([slot(0, "a", cached, 1)], "b", cached), { index: 0, reuseTokens: 0 });
    // With an empty slot available, the other tenant's cache is left alone.
    assert.deepEqual(chooseSlot([slot(0, "a", cached, 1), empty(1, 9)], "b", cached), { index: 1, reuseTokens: 0 });
  });

  test("cross-tenant: whatever the slots hold, another tenant's prefix never counts", () => {
    const prompt = seq(1, 20);
    const slots = [slot(0, "a", seq(1, 19), 3), slot(1, "a", seq(1, 10), 2), slot(2, "c", [99], 1)];
    // b's best option is the least recently used slot, with nothing reused.
    assert.deepEqual(chooseSlot(slots, "b", prompt), { index: 2, reuseTokens: 0 });
    // And when the LRU slot is a's long prefix, it still keeps nothing for b.
    const slots2 = [slot(0, "a", seq(1, 19), 1), slot(1, "c", [99], 2)];
    assert.deepEqual(chooseSlot(slots2, "b", prompt), { index: 0, reuseTokens: 0 });
  });

  test("tenant names are compared exactly", () => {
    const slots = [slot(0, "Alice", [1, 2, 3], 1)];
    assert.deepEqual(chooseSlot(slots, "alice", [1, 2, 3, 4]), { index: 0, reuseTokens: 0 });
    assert.deepEqual(chooseSlot(slots, "Alice", [1, 2, 3, 4]), { index: 0, reuseTokens: 3 });
  });

  test("prefers an empty slot over destroying an own slot whose overlap is less than half its cache", () => {
    // 2 of 6 cached tokens would survive: not worth it.
    const slots = [slot(0, "a", [1, 2, 3, 4, 5, 6], 1), empty(1)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 9, 9]), { index: 1, reuseTokens: 0 });
  });

  test("the at-least-half rule: exactly half is worth it, just under half is not", () => {
    // Cache of 6: reuse 3 (exactly half) → keep using the slot.
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 6), 1), empty(1)], "a", [1, 2, 3, 9, 9]), { index: 0, reuseTokens: 3 });
    // Reuse 2 of 6 → the empty slot is used instead.
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 6), 1), empty(1)], "a", [1, 2, 9, 9, 9]), { index: 1, reuseTokens: 0 });
    // Cache of 7: reuse 3 is under half → empty slot; reuse 4 → own slot.
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 7), 1), empty(1)], "a", [1, 2, 3, 9]), { index: 1, reuseTokens: 0 });
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 7), 1), empty(1)], "a", [1, 2, 3, 4, 9]), { index: 0, reuseTokens: 4 });
  });

  test("the half rule counts the capped reuse: a long cache and a short identical prefix prompt", () => {
    // Prompt [1,2,3] against cache [1..6]: reuse is capped at 2, which is under half of 6.
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 6), 1), empty(1)], "a", [1, 2, 3]), { index: 1, reuseTokens: 0 });
  });

  test("an own slot with zero overlap is not chosen over an empty slot", () => {
    assert.deepEqual(chooseSlot([slot(0, "a", [7, 8], 0), empty(1, 5)], "a", [1, 2]), { index: 1, reuseTokens: 0 });
  });

  test("picks the first empty slot when there are several", () => {
    const slots = [slot(0, "x", [1], 1), empty(1, 7), empty(2, 0)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2]), { index: 1, reuseTokens: 0 });
  });

  test("evicts the least recently used idle slot when every slot holds something", () => {
    const slots = [slot(0, "a", [7], 3), slot(1, "b", [8], 2), slot(2, "c", [9], 5), slot(3, "e", [6], 4)];
    assert.deepEqual(chooseSlot(slots, "d", [1, 2]), { index: 1, reuseTokens: 0 });
  });

  test("an evicted LRU slot of the same tenant keeps what prefix it can", () => {
    // Overlap too small to be "worth it", no empty slot: LRU is own slot, reuse its prefix anyway.
    const slots = [slot(0, "a", seq(1, 8), 1), slot(1, "b", [5], 2)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 9]), { index: 0, reuseTokens: 2 });
  });

  test("when the own small-overlap slot is not the LRU, the LRU slot is evicted instead", () => {
    const slots = [slot(0, "a", seq(1, 8), 10), slot(1, "b", [5], 2)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 9]), { index: 1, reuseTokens: 0 });
  });

  test("busy slots are never chosen, even with the best prefix or the oldest stamp", () => {
    const slots = [
      slot(0, "a", seq(1, 10), 0, true), // perfect prefix, but busy
      slot(1, "a", seq(1, 5), 5),
      slot(2, null, [], 0, true), // empty but busy
      slot(3, "b", [1], 1, true), // oldest but busy
    ];
    assert.deepEqual(chooseSlot(slots, "a", seq(1, 11)), { index: 1, reuseTokens: 5 });
    const noOwn = [slot(0, "b", [2], 9), slot(1, "c", [3], 4), slot(2, "a", [1], 0, true)];
    assert.deepEqual(chooseSlot(noOwn, "z", [1, 2]), { index: 1, reuseTokens: 0 });
  });

  test("eviction keeps the busy slots in one run: next to a busy slot before an older slot elsewhere", () => {
    const slots = [slot(0, "a", [1], 0, true), slot(1, "b", [2], 9), slot(2, "c", [3], 1)];
    assert.deepEqual(chooseSlot(slots, "z", [5]), { index: 1, reuseTokens: 0 });
    // Among slots next to busy ones, the least recently used.
    const both = [slot(0, "b", [2], 9), slot(1, "a", [1], 0, true), slot(2, "c", [3], 4), slot(3, "d", [4], 1)];
    assert.deepEqual(chooseSlot(both, "z", [5]), { index: 2, reuseTokens: 0 });
  });

  test("a slot that joins two busy runs comes before one that extends a run", () => {
    const slots = [slot(0, "a", [1], 0, true), slot(1, "b", [2], 5), slot(2, "a", [1], 0, true), slot(3, "c", [3], 1)];
    assert.deepEqual(chooseSlot(slots, "z", [5]), { index: 1, reuseTokens: 0 });
  });

  test("empty slots: one next to a busy slot before the first one", () => {
    const slots = [empty(0), empty(1), empty(2), slot(3, "a", [1], 0, true)];
    assert.deepEqual(chooseSlot(slots, "z", [5]), { index: 2, reuseTokens: 0 });
  });

  test("prefix reuse and empty slots still come before keeping the run", () => {
    const own = [slot(0, "a", [1], 0, true), slot(1, "b", [2], 1), slot(2, "a", [1], 0, true), slot(3, "z", [5, 6, 7], 9)];
    assert.deepEqual(chooseSlot(own, "z", [5, 6, 7, 8]), { index: 3, reuseTokens: 3 });
    const withEmpty = [slot(0, "a", [1], 0, true), slot(1, "b", [2], 1), empty(2, 9)];
    assert.deepEqual(chooseSlot(withEmpty, "z", [5]), { index: 2, reuseTokens: 0 });
  });

  test("randomised: requests admitted one after another into idle slots that all hold caches take one run of slots", () => {
    let s = 5;
    const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    for (let trial = 0; trial < 500; trial++) {
      const n = 1 + Math.floor(rand() * 16);
      let slots: SlotView[] = Array.from({ length: n }, (_, index) => slot(index, "t", [index + 100], Math.floor(rand() * 1000)));
      const k = 1 + Math.floor(rand() * n);
      for (let i = 0; i < k; i++) {
        const c = chooseSlot(slots, "u", [1, 2]);
        assert.ok(c);
        slots = slots.map((x) => (x.index === c.index ? { ...x, busy: true } : x));
      }
      const busy = slots.filter((x) => x.busy).map((x) => x.index);
      assert.equal(busy.length, k);
      assert.equal(busy.at(-1)! - busy[0]!, k - 1, JSON.stringify({ n, k, busy }));
    }
  });

  test("returns null when every slot is busy, or there are no slots", () => {
    assert.equal(chooseSlot([slot(0, "a", [1], 1, true), slot(1, null, [], 0, true)], "a", [1, 2]), null);
    assert.equal(chooseSlot([], "a", [1, 2]), null);
  });

  test("reuse is never more than prompt.length - 1, whichever rule picked the slot", () => {
    const prompt = [1, 2, 3];
    // rule 1 (own slot worth it)
    assert.deepEqual(chooseSlot([slot(0, "a", [1, 2, 3], 1)], "a", prompt), { index: 0, reuseTokens: 2 });
    // rule 3 (own LRU slot, cache longer than the prompt)
    assert.deepEqual(chooseSlot([slot(0, "a", seq(1, 20), 1)], "a", prompt), { index: 0, reuseTokens: 2 });
    // single-token prompt: nothing can be reused
    assert.deepEqual(chooseSlot([slot(0, "a", [1], 1)], "a", [1]), { index: 0, reuseTokens: 0 });
  });

  test("does not mutate its input", () => {
    const slots = [slot(0, "a", [1, 2, 3], 1), empty(1)];
    const snapshot = JSON.stringify(slots);
    chooseSlot(slots, "a", [1, 2, 3, 4]);
    assert.equal(JSON.stringify(slots), snapshot);
  });

  test("random slot tables: choice is idle, never reuses across tenants, reuse is a true capped prefix", () => {
    let s = 17;
    const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    const tenants = ["a", "b", "c"];
    for (let trial = 0; trial < 2000; trial++) {
      const n = Math.floor(rand() * 5);
      const slots: SlotView[] = [];
      for (let i = 0; i < n; i++) {
        const isEmpty = rand() < 0.25;
        const cached = isEmpty ? [] : Array.from({ length: 1 + Math.floor(rand() * 6) }, () => 1 + Math.floor(rand() * 3));
        slots.push(slot(i, isEmpty ? null : tenants[Math.floor(rand() * 3)]!, cached, Math.floor(rand() * 100), rand() < 0.3));
      }
      const tenant = tenants[Math.floor(rand() * 3)]!;
      const prompt = Array.from({ length: 1 + Math.floor(rand() * 6) }, () => 1 + Math.floor(rand() * 3));
      const choice = chooseSlot(slots, tenant, prompt);
      const label = JSON.stringify({ slots, tenant, prompt, choice });
      const idle = slots.filter((x) => !x.busy);
      if (idle.length === 0) {
        assert.equal(choice, null, label);
        continue;
      }
      assert.ok(choice, label);
      const chosen = slots.find((x) => x.index === choice.index);
      assert.ok(chosen && !chosen.busy, label);
      assert.ok(choice.reuseTokens >= 0 && choice.reuseTokens <= prompt.length - 1, label);
      if (choice.reuseTokens > 0) {
        assert.equal(chosen.tenant, tenant, label);
        assert.ok(commonPrefixLength(chosen.cachedTokens, prompt) >= choice.reuseTokens, label);
      }
      if (chosen.tenant !== tenant) assert.equal(choice.reuseTokens, 0, label);
      // When an empty idle slot existed and we did not take it, we must have found a worthwhile own slot.
      if (idle.some((x) => x.cachedTokens.length === 0) && chosen.cachedTokens.length > 0) {
        assert.equal(chosen.tenant, tenant, label);
        assert.ok(choice.reuseTokens * 2 >= chosen.cachedTokens.length && choice.reuseTokens > 0, label);
      }
    }
  });
});

describe("chooseSlot: per-tenant slot caps and reservations", () => {
  test("a tenant at its maxSlots cap gets no slot, even with idle ones; below the cap it does", () => {
    const slots = [slot(0, "a", [1], 1, true), slot(1, "a", [2], 2, true), empty(2), empty(3)];
    assert.equal(chooseSlot(slots, "a", [1, 2], policies({ id: "a", maxSlots: 2 })), null);
    assert.deepEqual(chooseSlot(slots, "a", [1, 2], policies({ id: "a", maxSlots: 3 })), { index: 2, reuseTokens: 0 });
    // Another tenant is not affected by a's cap.
    assert.deepEqual(chooseSlot(slots, "b", [1, 2], policies({ id: "a", maxSlots: 2 })), { index: 2, reuseTokens: 0 });
  });

  test("idle slots holding the tenant's cache do not count against its cap: only busy ones are held", () => {
    const slots = [slot(0, "a", [1, 2, 3], 1), slot(1, "a", [7], 2, true), empty(2)];
    assert.deepEqual(chooseSlot(slots, "a", [1, 2, 3, 4], policies({ id: "a", maxSlots: 2 })), { index: 0, reuseTokens: 3 });
    assert.deepEqual([...heldSlots(slots)], [["a", 1]]);
  });

  test("slots reserved for another tenant are not given away", () => {
    // 2 idle slots, b reserves 2 and holds none: a gets nothing.
    const slots = [slot(0, "a", [1], 1, true), empty(1), empty(2)];
    const ps = policies({ id: "b", reservedSlots: 2 });
    assert.equal(reservedForOthers(slots, "a", ps), 2);
    assert.equal(chooseSlot(slots, "a", [1, 2], ps), null);
    // b itself can take them.
    assert.deepEqual(chooseSlot(slots, "b", [1, 2], ps), { index: 1, reuseTokens: 0 });
    // With one more idle slot, a gets one.
    assert.deepEqual(chooseSlot([...slots, empty(3)], "a", [1, 2], ps), { index: 1, reuseTokens: 0 });
  });

  test("a reservation already in use frees nothing more: reserved minus held", () => {
    const ps = policies({ id: "b", reservedSlots: 2 });
    const slots = [slot(0, "b", [1], 1, true), empty(1), empty(2)];
    assert.equal(reservedForOthers(slots, "a", ps), 1);
    assert.deepEqual(chooseSlot(slots, "a", [5], ps), { index: 1, reuseTokens: 0 });
    // b beyond its reservation reserves nothing.
    const over = [slot(0, "b", [1], 1, true), slot(1, "b", [1], 1, true), slot(2, "b", [1], 1, true), empty(3)];
    assert.equal(reservedForOthers(over, "a", ps), 0);
    assert.deepEqual(chooseSlot(over, "a", [5], ps), { index: 3, reuseTokens: 0 });
  });

  test("the caller's own reservation does not block it, and a reservation above the cap only counts up to the cap", () => {
    const slots = [empty(0), empty(1)];
    assert.deepEqual(chooseSlot(slots, "a", [1], policies({ id: "a", reservedSlots: 2 })), { index: 0, reuseTokens: 0 });
    const ps = policies({ id: "b", reservedSlots: 5, maxSlots: 1 });
    assert.equal(reservedForOthers(slots, "a", ps), 1);
    assert.deepEqual(chooseSlot(slots, "a", [1], ps), { index: 0, reuseTokens: 0 });
  });

  test("eviction prefers slots no reservation needs: a reserved tenant's cache survives", () => {
    // All idle, all full. b (reserved 1, holds none) has the oldest slot; c has none reserved.
    const slots = [slot(0, "b", [1, 2, 3], 1), slot(1, "c", [4], 5), slot(2, "c", [5], 9)];
    const ps = policies({ id: "b", reservedSlots: 1 });
    assert.deepEqual(chooseSlot(slots, "a", [7, 8], ps), { index: 1, reuseTokens: 0 });
    // Without the reservation, plain LRU evicts b's slot.
    assert.deepEqual(chooseSlot(slots, "a", [7, 8]), { index: 0, reuseTokens: 0 });
    // Only the slots the reservation needs are kept: b's most recent one.
    const two = [slot(0, "b", [1], 1), slot(1, "b", [2], 3), slot(2, "c", [5], 9), slot(3, "c", [6], 9)];
    assert.deepEqual(chooseSlot(two, "a", [7], ps), { index: 0, reuseTokens: 0 });
  });

  test("when only reservation-needed slots are left, LRU among them is used (if the count allows)", () => {
    const slots = [slot(0, "b", [1], 1), slot(1, "b", [2], 3), slot(2, "a", [9], 0, true)];
    const ps = policies({ id: "b", reservedSlots: 1 });
    // 2 idle, 1 reserved for b: a may take one, and b's slots are all it can take.
    assert.deepEqual(chooseSlot(slots, "a", [7], ps), { index: 0, reuseTokens: 0 });
  });

  test("randomised: with reservations adding up to at most the slots, a tenant below its reservation always gets a slot", () => {
    let s = 99;
    const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    const tenants = ["a", "b", "c", "d"];
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(rand() * 6);
      let budget = n;
      const ps = policies(
        ...tenants.map((id) => {
          const reservedSlots = Math.floor(rand() * (budget + 1) * 0.6);
          budget -= reservedSlots;
          const maxSlots = rand() < 0.3 ? Math.max(1, reservedSlots + Math.floor(rand() * 2)) : null;
          return { id, reservedSlots, maxSlots };
        }),
      );
      let slots: SlotView[] = Array.from({ length: n }, (_, index) => empty(index));
      for (let op = 0; op < 60; op++) {
        const label = JSON.stringify({ trial, op, ps: [...ps.values()], slots });
        const held = heldSlots(slots);
        for (const p of ps.values()) {
          if ((held.get(p.id) ?? 0) < Math.min(p.reservedSlots, p.maxSlots ?? Infinity)) assert.ok(chooseSlot(slots, p.id, [1, 2], ps), `${p.id}: ${label}`);
          if (p.maxSlots !== null && (held.get(p.id) ?? 0) >= p.maxSlots) assert.equal(chooseSlot(slots, p.id, [1, 2], ps), null, label);
        }
        if (rand() < 0.6) {
          const t = tenants[Math.floor(rand() * tenants.length)]!;
          const c = chooseSlot(slots, t, [Math.floor(rand() * 3), 2], ps);
          if (c) slots = slots.map((x) => (x.index === c.index ? { ...x, busy: true, tenant: t, cachedTokens: [1, 2], lastUsed: op } : x));
        } else {
          const busy = slots.filter((x) => x.busy);
          const victim = busy[Math.floor(rand() * busy.length)];
          if (victim) slots = slots.map((x) => (x === victim ? { ...x, busy: false, lastUsed: op } : x));
        }
      }
    }
  });
});
