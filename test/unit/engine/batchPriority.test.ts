// Priority classes in step planning (engine/scheduler.ts): batch requests run
// only on capacity interactive requests leave free, at most maxBatchSlots at
// once, are preempted for an interactive request that finds no slot, and are
// shared fairly among tenants.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { planStep, type RunningView, type WaitingView } from "../../../engine/scheduler.js";
import type { SlotView } from "../../../engine/slots.js";

const toks = (n: number, start = 1): number[] => Array.from({ length: n }, (_, i) => start + i);
const freeSlots = (n: number): SlotView[] => Array.from({ length: n }, (_, index) => ({ index, tenant: null, cachedTokens: [], busy: false, lastUsed: 0 }));
const held = (index: number, tenant: string): SlotView => ({ index, tenant, cachedTokens: toks(4, 100 + index * 10), busy: true, lastUsed: index + 1 });
const interactive = (id: string, tenant: string, n = 4): WaitingView => ({ id, tenant, promptTokens: toks(n) });
const batch = (id: string, tenant: string, n = 4): WaitingView => ({ id, tenant, promptTokens: toks(n, 1000), batch: true });
const runningBatch = (id: string, tenant: string, slotIndex: number, generatedTokens: number, prefillRemaining = 0): RunningView => ({
  id,
  tenant,
  prefillRemaining,
  batch: true,
  slotIndex,
  generatedTokens,
});

describe("planStep: batch priority class", () => {
  test("with no interactive traffic, batch requests fill every free slot", () => {
    const waiting = Array.from({ length: 6 }, (_, i) => batch(`b${i}`, "t"));
    const plan = planStep({ waiting, running: [], slots: freeSlots(4), stepTokens: 512 });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["b0", "b1", "b2", "b3"],
    );
    assert.equal(plan.preempt, undefined);
  });

  test("interactive requests are admitted before batch requests that arrived earlier", () => {
    const waiting = [batch("b0", "t"), batch("b1", "t"), interactive("i0", "u"), interactive("i1", "u")];
    const plan = planStep({ waiting, running: [], slots: freeSlots(3), stepTokens: 512 });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["i0", "i1", "b0"],
    );
  });

  test("no batch request is admitted while an interactive request still waits for a slot", () => {
    // One free slot, two interactive waiting: one is admitted, the other waits; the batch request waits behind it.
    const slots = [...freeSlots(1), held(1, "u")];
    const waiting = [interactive("i0", "u"), interactive("i1", "v"), batch("b0", "t")];
    const plan = planStep({ waiting, running: [{ id: "r", tenant: "u", prefillRemaining: 0 }], slots, stepTokens: 512 });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["i0"],
    );
  });

  test("an interactive request left over for lack of step budget also holds batch admissions back", () => {
    const waiting = [interactive("i0", "u", 10), interactive("i1", "u", 10), batch("b0", "t", 2)];
    const plan = planStep({ waiting, running: [], slots: freeSlots(4), stepTokens: 10 });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["i0"],
    );
  });

  test("an interactive request its tenant's cap keeps waiting does not hold batch work back", () => {
    const policies = new Map([["u", { id: "u", weight: 1, reservedSlots: 0, maxSlots: 1 }]]);
    const slots = [held(0, "u"), ...freeSlots(3).slice(1)];
    const waiting = [interactive("i0", "u"), batch("b0", "t"), batch("b1", "t")];
    const plan = planStep({ waiting, running: [{ id: "r", tenant: "u", prefillRemaining: 0 }], slots, stepTokens: 512, policies });
    assert.deepEqual(plan.admit.map((a) => a.id).sort(), ["b0", "b1"]);
  });

  test("at most maxBatchSlots batch requests run at once, running ones included", () => {
    const slots = [held(0, "t"), ...freeSlots(4).slice(1)];
    const waiting = [batch("b1", "t"), batch("b2", "t"), batch("b3", "t")];
    const plan = planStep({ waiting, running: [runningBatch("b0", "t", 0, 3)], slots, stepTokens: 512, maxBatchSlots: 2 });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["b1"],
    );
  });

  test("an interactive request that finds every slot held by batch work preempts the batch request with the least done, in the same step", () => {
    const slots = [held(0, "t"), held(1, "t"), held(2, "t")];
    const running = [runningBatch("b0", "t", 0, 9), runningBatch("b1", "t", 1, 2), runningBatch("b2", "t", 2, 5)];
    const plan = planStep({ waiting: [interactive("i0", "u")], running, slots, stepTokens: 512 });
    assert.deepEqual(plan.preempt, ["b1"]);
    assert.deepEqual(plan.admit, [{ id: "i0", slotIndex: 1, reuseTokens: 0, source: { kind: "fresh" } }]);
    // The preempted request is not stepped; the others keep decoding.
    assert.deepEqual(plan.decode, ["b0", "b2"]);
    assert.deepEqual(plan.prefill, [{ id: "i0", tokens: 4, final: true }]);
  });

  test("interactive requests never preempt interactive ones, and nothing is preempted while a slot is free", () => {
    const slots = [held(0, "u"), held(1, "t"), ...freeSlots(3).slice(2)];
    const running: RunningView[] = [{ id: "r", tenant: "u", prefillRemaining: 0 }, runningBatch("b0", "t", 1, 0)];
    const one = planStep({ waiting: [interactive("i0", "v")], running, slots, stepTokens: 512 });
    assert.equal(one.preempt, undefined);
    assert.deepEqual(
      one.admit.map((a) => a.id),
      ["i0"],
    );
    const full = [held(0, "u"), held(1, "u")];
    const none = planStep({
      waiting: [interactive("i0", "v")],
      running: [
        { id: "r", tenant: "u", prefillRemaining: 0 },
        { id: "s", tenant: "u", prefillRemaining: 0 },
      ],
      slots: full,
      stepTokens: 512,
    });
    assert.equal(none.preempt, undefined);
    assert.deepEqual(none.admit, []);
  });

  test("a batch slot the interactive tenant may not take (reserved for another) is not preempted for it", () => {
    const policies = new Map([["t", { id: "t", weight: 1, reservedSlots: 1, maxSlots: null }]]);
    const slots = [held(0, "x"), held(1, "t")];
    const running: RunningView[] = [{ id: "r", tenant: "x", prefillRemaining: 0 }, runningBatch("b0", "t", 1, 0)];
    const plan = planStep({ waiting: [interactive("i0", "u")], running, slots, stepTokens: 512, policies });
    assert.equal(plan.preempt, undefined);
  });

  test("interactive prompts are read before batch prompts already prefilling", () => {
    const slots = [held(0, "t"), ...freeSlots(2).slice(1)];
    const running = [runningBatch("b0", "t", 0, 0, 100)];
    const plan = planStep({ waiting: [interactive("i0", "u", 30)], running, slots, stepTokens: 40 });
    assert.deepEqual(plan.prefill, [
      { id: "i0", tokens: 30, final: true },
      { id: "b0", tokens: 10, final: false },
    ]);
  });

  test("batch slots are shared fairly: the tenant with the smaller counter goes first", () => {
    const waiting = [batch("a0", "a"), batch("a1", "a"), batch("a2", "a"), batch("b0", "b"), batch("b1", "b")];
    const counters = new Map([
      ["a", 0],
      ["b", 0],
    ]);
    const plan = planStep({ waiting, running: [], slots: freeSlots(4), stepTokens: 512, counters });
    const tenants = plan.admit.map((a) => a.id[0]);
    assert.equal(tenants.filter((t) => t === "a").length, 2);
    assert.equal(tenants.filter((t) => t === "b").length, 2);
  });

  test("without batch requests the plan is the single-class one (no preempt field)", () => {
    const plan = planStep({ waiting: [interactive("i0", "u")], running: [], slots: freeSlots(2), stepTokens: 512 });
    assert.deepEqual(plan, {
      admit: [{ id: "i0", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } }],
      prefill: [{ id: "i0", tokens: 4, final: true }],
      decode: [],
    });
  });
});
