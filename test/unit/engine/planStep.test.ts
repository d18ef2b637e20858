// Step planning (engine/scheduler.ts): lockstep decode, chunked prefill, FIFO admission.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { planStep, type RunningView, type SchedulerInput, type StepPlan, type WaitingView } from "../../../engine/scheduler.js";
import type { TenantPolicies } from "../../../engine/fairness.js";
import type { TenantPolicy } from "../../../engine/protocol.js";
import type { SlotView } from "../../../engine/slots.js";

const freeSlots = (n: number): SlotView[] => Array.from({ length: n }, (_, index) => ({ index, tenant: null, cachedTokens: [], busy: false, lastUsed: 0 }));
const busySlot = (index: number): SlotView => ({ index, tenant: "x", cachedTokens: [1], busy: true, lastUsed: 0 });
const toks = (n: number, start = 1): number[] => Array.from({ length: n }, (_, i) => start + i);
const waiting = (id: string, tenant: string, n: number): WaitingView => ({ id, tenant, promptTokens: toks(n) });
const decoding = (id: string): RunningView => ({ id, prefillRemaining: 0 });
const prefilling = (id: string, remaining: number): RunningView => ({ id, prefillRemaining: remaining });

const policies = (...ps: Array<Partial<TenantPolicy> & { id: string }>): TenantPolicies =>
  new Map(ps.map((p) => [p.id, { weight: 1, reservedSlots: 0, maxSlots: null, ...p }]));
const stepTotal = (plan: StepPlan): number => plan.decode.length + plan.prefill.reduce((sum, c) => sum + c.tokens, 0);

describe("planStep: decoding", () => {
  test("every decoding request gets exactly one token, in running order", () => {
    const plan = planStep({ waiting: [], running: [decoding("a"), decoding("b"), decoding("c")], slots: [], stepTokens: 512 });
    assert.deepEqual(plan, { admit: [], prefill: [], decode: ["a", "b", "c"] });
  });

  test("requests still prefilling are not decoded", () => {
    const plan = planStep({ waiting: [], running: [prefilling("p", 5), decoding("d")], slots: [], stepTokens: 512 });
    assert.deepEqual(plan.decode, ["d"]);
    assert.deepEqual(plan.prefill, [{ id: "p", tokens: 5, final: true }]);
  });

  test("decode is never starved: with more decoders than stepTokens all still decode and nothing is prefilled", () => {
    const running = [decoding("a"), decoding("b"), decoding("c"), prefilling("p", 10)];
    const plan = planStep({ waiting: [waiting("w", "t", 3)], running, slots: freeSlots(1), stepTokens: 2 });
    assert.deepEqual(plan.decode, ["a", "b", "c"]);
    assert.deepEqual(plan.prefill, []);
    assert.deepEqual(plan.admit, []);
  });

  test("an empty engine plans nothing", () => {
    assert.deepEqual(planStep({ waiting: [], running: [], slots: freeSlots(4), stepTokens: 512 }), { admit: [], prefill: [], decode: [] });
  });
});

describe("planStep: chunked prefill", () => {
  test("prefill fills exactly the budget left after decode", () => {
    const plan = planStep({ waiting: [], running: [decoding("d1"), decoding("d2"), prefilling("p", 100)], slots: [], stepTokens: 32 });
    assert.deepEqual(plan.decode, ["d1", "d2"]);
    assert.deepEqual(plan.prefill, [{ id: "p", tokens: 30, final: false }]);
    assert.equal(stepTotal(plan), 32);
  });

  test("several prefilling requests share the budget in order; the one cut short is not final", () => {
    const plan = planStep({ waiting: [], running: [prefilling("p1", 10), prefilling("p2", 20), prefilling("p3", 5)], slots: [], stepTokens: 25 });
    assert.deepEqual(plan.prefill, [
      { id: "p1", tokens: 10, final: true },
      { id: "p2", tokens: 15, final: false },
    ]);
    assert.equal(stepTotal(plan), 25);
  });

  test("a chunk that exactly reaches the end of the prompt is final", () => {
    const plan = planStep({ waiting: [], running: [prefilling("p", 16)], slots: [], stepTokens: 16 });
    assert.deepEqual(plan.prefill, [{ id: "p", tokens: 16, final: true }]);
  });

  test("a long prompt is split across steps, final only on the last chunk, while decoders keep advancing", () => {
    let remaining = 100;
    const chunks: Array<[number, boolean]> = [];
    let decodeSteps = 0;
    for (let step = 0; step < 20 && remaining > 0; step++) {
      const plan = planStep({ waiting: [], running: [decoding("d1"), prefilling("p", remaining), decoding("d2")], slots: [], stepTokens: 24 });
      assert.deepEqual(plan.decode, ["d1", "d2"], "decoders advance every step");
      assert.ok(stepTotal(plan) <= 24);
      assert.equal(plan.prefill.length, 1);
      const c = plan.prefill[0]!;
      assert.equal(c.id, "p");
      chunks.push([c.tokens, c.final]);
      remaining -= c.tokens;
      decodeSteps++;
    }
    assert.equal(remaining, 0);
    assert.deepEqual(chunks, [
      [22, false],
      [22, false],
      [22, false],
      [22, false],
      [12, true],
    ]);
    assert.equal(decodeSteps, 5);
  });

  test("the sum of decode tokens and prefill tokens never exceeds stepTokens (randomised)", () => {
    let s = 3;
    const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    for (let trial = 0; trial < 1000; trial++) {
      const stepTokens = 1 + Math.floor(rand() * 64);
      const running: RunningView[] = Array.from({ length: Math.floor(rand() * 6) }, (_, i) =>
        rand() < 0.5 ? decoding(`r${i}`) : prefilling(`r${i}`, 1 + Math.floor(rand() * 100)),
      );
      const nSlots = Math.floor(rand() * 5);
      const slots: SlotView[] = Array.from(
        { length: nSlots },
        (_, index): SlotView => ({
          index,
          tenant: rand() < 0.5 ? null : ["a", "b"][Math.floor(rand() * 2)]!,
          cachedTokens: [],
          busy: rand() < 0.3,
          lastUsed: Math.floor(rand() * 10),
        }),
      ).map((sl): SlotView => (sl.tenant ? { ...sl, cachedTokens: toks(1 + Math.floor(rand() * 20)) } : sl));
      const waitingList: WaitingView[] = Array.from({ length: Math.floor(rand() * 5) }, (_, i) => ({
        id: `w${i}`,
        tenant: ["a", "b"][Math.floor(rand() * 2)]!,
        promptTokens: toks(1 + Math.floor(rand() * 80)),
      }));
      const input: SchedulerInput = { waiting: waitingList, running, slots, stepTokens };
      const plan = planStep(input);
      const label = JSON.stringify({ input, plan });
      const decoders = running.filter((r) => r.prefillRemaining === 0).map((r) => r.id);
      assert.deepEqual(plan.decode, decoders, label);
      if (decoders.length <= stepTokens) assert.ok(stepTotal(plan) <= stepTokens, label);
      else assert.deepEqual(plan.prefill, [], label);

      // Chunks: positive, within what is left, final iff they finish the prompt.
      for (const c of plan.prefill) {
        assert.ok(c.tokens > 0, label);
        const r = running.find((x) => x.id === c.id);
        const remaining = r
          ? r.prefillRemaining
          : (() => {
              const w = waitingList.find((x) => x.id === c.id)!;
              const a = plan.admit.find((x) => x.id === c.id)!;
              return w.promptTokens.length - a.reuseTokens;
            })();
        assert.ok(c.tokens <= remaining, label);
        assert.equal(c.final, c.tokens === remaining, label);
      }
      // Admissions: a FIFO prefix of the queue, distinct idle slots, every admitted request prefills something.
      assert.deepEqual(
        plan.admit.map((a) => a.id),
        waitingList.slice(0, plan.admit.length).map((w) => w.id),
        label,
      );
      const used = new Set<number>();
      for (const a of plan.admit) {
        const sl = slots.find((x) => x.index === a.slotIndex);
        assert.ok(sl && !sl.busy, label);
        assert.ok(!used.has(a.slotIndex), label);
        used.add(a.slotIndex);
        assert.ok(
          plan.prefill.some((c) => c.id === a.id),
          label,
        );
        const w = waitingList.find((x) => x.id === a.id)!;
        if (a.reuseTokens > 0) assert.equal(sl.tenant, w.tenant, label);
      }
      // Admission stops only for lack of budget or of an idle slot.
      if (plan.admit.length < waitingList.length) {
        const idleLeft = slots.filter((x) => !x.busy && !used.has(x.index)).length;
        assert.ok(stepTotal(plan) >= stepTokens || idleLeft === 0, label);
      }
    }
  });
});

describe("planStep: admission", () => {
  test("admits FIFO while slots last, each into its own slot", () => {
    const plan = planStep({
      waiting: [waiting("w1", "a", 10), waiting("w2", "b", 10), waiting("w3", "c", 10)],
      running: [],
      slots: freeSlots(2),
      stepTokens: 512,
    });
    assert.deepEqual(plan.admit, [
      { id: "w1", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } },
      { id: "w2", slotIndex: 1, reuseTokens: 0, source: { kind: "fresh" } },
    ]);
    assert.deepEqual(plan.prefill, [
      { id: "w1", tokens: 10, final: true },
      { id: "w2", tokens: 10, final: true },
    ]);
  });

  test("no admission when every slot is busy, even with budget", () => {
    const plan = planStep({ waiting: [waiting("w", "a", 5)], running: [decoding("d")], slots: [busySlot(0), busySlot(1)], stepTokens: 512 });
    assert.deepEqual(plan, { admit: [], prefill: [], decode: ["d"] });
  });

  test("no admission when decode uses the whole budget, even with a free slot", () => {
    const plan = planStep({ waiting: [waiting("w", "a", 5)], running: [decoding("d1"), decoding("d2")], slots: freeSlots(2), stepTokens: 2 });
    assert.deepEqual(plan, { admit: [], prefill: [], decode: ["d1", "d2"] });
  });

  test("no admission when running prefills use the whole budget", () => {
    const plan = planStep({ waiting: [waiting("w", "a", 5)], running: [prefilling("p", 50)], slots: freeSlots(2), stepTokens: 32 });
    assert.deepEqual(plan.admit, []);
    assert.deepEqual(plan.prefill, [{ id: "p", tokens: 32, final: false }]);
  });

  test("a request is admitted with whatever budget is left and gets a partial first chunk", () => {
    const plan = planStep({ waiting: [waiting("w", "a", 50)], running: [decoding("d"), prefilling("p", 20)], slots: freeSlots(1), stepTokens: 32 });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } }]);
    assert.deepEqual(plan.prefill, [
      { id: "p", tokens: 20, final: true },
      { id: "w", tokens: 11, final: false },
    ]);
  });

  test("admission stops once the budget is spent; later requests wait even with free slots", () => {
    const plan = planStep({
      waiting: [waiting("w1", "a", 20), waiting("w2", "a", 20), waiting("w3", "a", 20)],
      running: [],
      slots: freeSlots(3),
      stepTokens: 30,
    });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["w1", "w2"],
    );
    assert.deepEqual(plan.prefill, [
      { id: "w1", tokens: 20, final: true },
      { id: "w2", tokens: 10, final: false },
    ]);
  });

  test("FIFO: a later request is never admitted ahead of an earlier one", () => {
    const plan = planStep({
      waiting: [waiting("first", "a", 100), waiting("second", "b", 1)],
      running: [],
      slots: freeSlots(1),
      stepTokens: 16,
    });
    assert.deepEqual(plan.admit, [{ id: "first", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } }]);
    assert.deepEqual(plan.prefill, [{ id: "first", tokens: 16, final: false }]);
  });

  test("an admitted request with a reused prefix only prefills the remainder", () => {
    const cached: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: toks(8), busy: false, lastUsed: 1 },
      ...freeSlots(2).map((s) => ({ ...s, index: s.index + 1 })),
    ];
    const plan = planStep({ waiting: [{ id: "w", tenant: "a", promptTokens: toks(10) }], running: [], slots: cached, stepTokens: 512 });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 0, reuseTokens: 8, source: { kind: "slot", keepTokens: 8 } }]);
    assert.deepEqual(plan.prefill, [{ id: "w", tokens: 2, final: true }]);
  });

  test("an identical cached prompt still prefills one token", () => {
    const cached: SlotView[] = [{ index: 3, tenant: "a", cachedTokens: toks(10), busy: false, lastUsed: 1 }];
    const plan = planStep({ waiting: [{ id: "w", tenant: "a", promptTokens: toks(10) }], running: [], slots: cached, stepTokens: 512 });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 3, reuseTokens: 9, source: { kind: "slot", keepTokens: 9 } }]);
    assert.deepEqual(plan.prefill, [{ id: "w", tokens: 1, final: true }]);
  });

  test("a reused prefix saves budget for the next admission", () => {
    const slots: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: toks(90), busy: false, lastUsed: 1 },
      { index: 1, tenant: null, cachedTokens: [], busy: false, lastUsed: 0 },
    ];
    const plan = planStep({ waiting: [waiting("w1", "a", 100), waiting("w2", "b", 10)], running: [], slots, stepTokens: 20 });
    assert.deepEqual(plan.admit, [
      { id: "w1", slotIndex: 0, reuseTokens: 90, source: { kind: "slot", keepTokens: 90 } },
      { id: "w2", slotIndex: 1, reuseTokens: 0, source: { kind: "fresh" } },
    ]);
    assert.deepEqual(plan.prefill, [
      { id: "w1", tokens: 10, final: true },
      { id: "w2", tokens: 10, final: true },
    ]);
  });

  test("a cross-tenant request admitted into another tenant's slot reuses nothing", () => {
    const slots: SlotView[] = [{ index: 0, tenant: "a", cachedTokens: toks(10), busy: false, lastUsed: 1 }];
    const plan = planStep({ waiting: [{ id: "w", tenant: "b", promptTokens: toks(10) }], running: [], slots, stepTokens: 512 });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } }]);
    assert.deepEqual(plan.prefill, [{ id: "w", tokens: 10, final: true }]);
  });

  test("two waiting requests of the same tenant never get the same slot in one plan", () => {
    const slots: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: toks(10), busy: false, lastUsed: 5 },
      { index: 1, tenant: "a", cachedTokens: toks(3, 100), busy: false, lastUsed: 1 },
    ];
    const plan = planStep({
      waiting: [
        { id: "w1", tenant: "a", promptTokens: toks(12) },
        { id: "w2", tenant: "a", promptTokens: toks(12) },
        { id: "w3", tenant: "a", promptTokens: toks(12) },
      ],
      running: [],
      slots,
      stepTokens: 512,
    });
    // w1 takes the slot holding its prefix; w2 cannot take it again and gets the other one; w3 waits.
    assert.deepEqual(plan.admit, [
      { id: "w1", slotIndex: 0, reuseTokens: 10, source: { kind: "slot", keepTokens: 10 } },
      { id: "w2", slotIndex: 1, reuseTokens: 0, source: { kind: "fresh" } },
    ]);
    assert.deepEqual(plan.prefill, [
      { id: "w1", tokens: 2, final: true },
      { id: "w2", tokens: 12, final: true },
    ]);
  });

  test("busy slots given as input stay untouched; the input slots are not mutated", () => {
    const slots: SlotView[] = [busySlot(0), ...freeSlots(2).map((s) => ({ ...s, index: s.index + 1 }))];
    const snapshot = JSON.stringify(slots);
    const plan = planStep({ waiting: [waiting("w1", "a", 4), waiting("w2", "a", 4)], running: [], slots, stepTokens: 512 });
    assert.deepEqual(
      plan.admit.map((a) => a.slotIndex),
      [1, 2],
    );
    assert.equal(JSON.stringify(slots), snapshot);
  });

  test("simulated steps: a request is admitted, prefilled in chunks, then decodes", () => {
    const prompt = toks(40);
    let slots = freeSlots(1);
    let running: RunningView[] = [];
    let queue: WaitingView[] = [{ id: "w", tenant: "a", promptTokens: prompt }];
    const log: string[] = [];
    for (let step = 0; step < 6; step++) {
      const plan = planStep({ waiting: queue, running, slots, stepTokens: 16 });
      for (const a of plan.admit) {
        const w = queue.find((q) => q.id === a.id)!;
        queue = queue.filter((q) => q.id !== a.id);
        slots = slots.map((s) => (s.index === a.slotIndex ? { ...s, busy: true, tenant: w.tenant } : s));
        running = [...running, { id: a.id, prefillRemaining: w.promptTokens.length - a.reuseTokens }];
      }
      running = running.map((r) => {
        const c = plan.prefill.find((p) => p.id === r.id);
        return c ? { ...r, prefillRemaining: r.prefillRemaining - c.tokens } : r;
      });
      log.push(
        [
          plan.admit.map((a) => `admit:${a.id}`).join(","),
          plan.prefill.map((c) => `prefill:${c.id}:${c.tokens}${c.final ? "!" : ""}`).join(","),
          plan.decode.map((d) => `decode:${d}`).join(","),
        ]
          .filter(Boolean)
          .join(" "),
      );
    }
    assert.deepEqual(log, ["admit:w prefill:w:16", "prefill:w:16", "prefill:w:8!", "decode:w", "decode:w", "decode:w"]);
  });
});

describe("planStep: fair admission across tenants", () => {
  test("the tenant with the smallest counter is admitted first, whatever the arrival order", () => {
    const plan = planStep({
      waiting: [waiting("a1", "a", 10), waiting("a2", "a", 10), waiting("b1", "b", 10)],
      running: [],
      slots: freeSlots(1),
      stepTokens: 512,
      counters: new Map([
        ["a", 100],
        ["b", 20],
      ]),
    });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["b1"],
    );
  });

  test("several free slots are shared between tenants, not all given to the first arrival's tenant", () => {
    const plan = planStep({
      waiting: [waiting("a1", "a", 10), waiting("a2", "a", 10), waiting("a3", "a", 10), waiting("b1", "b", 10), waiting("b2", "b", 10)],
      running: [],
      slots: freeSlots(4),
      stepTokens: 512,
      counters: new Map(),
    });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["a1", "b1", "a2", "b2"],
    );
    assert.deepEqual(
      plan.admit.map((a) => a.slotIndex),
      [0, 1, 2, 3],
    );
  });

  test("the projected charge is what the admission evaluates: a reused prefix costs little", () => {
    const slots: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: toks(99), busy: false, lastUsed: 1 },
      ...freeSlots(3).map((s) => ({ ...s, index: s.index + 1 })),
    ];
    const plan = planStep({
      waiting: [waiting("a1", "a", 100), waiting("a2", "a", 5), waiting("b1", "b", 20), waiting("b2", "b", 20)],
      running: [],
      slots,
      stepTokens: 512,
      counters: new Map(),
    });
    // a1 evaluates 1 token (a: 1), b1 20 (b: 20): a2 comes before b2. Charging
    // a1's whole prompt (100) would have put both of b's requests first.
    assert.deepEqual(plan.admit, [
      { id: "a1", slotIndex: 0, reuseTokens: 99, source: { kind: "slot", keepTokens: 99 } },
      { id: "b1", slotIndex: 1, reuseTokens: 0, source: { kind: "fresh" } },
      { id: "a2", slotIndex: 2, reuseTokens: 0, source: { kind: "fresh" } },
      { id: "b2", slotIndex: 3, reuseTokens: 0, source: { kind: "fresh" } },
    ]);
  });

  test("priority reorders a tenant's own requests only", () => {
    const w: WaitingView[] = [
      { id: "a-low", tenant: "a", promptTokens: toks(4), priority: 0 },
      { id: "a-high", tenant: "a", promptTokens: toks(4), priority: 9 },
      { id: "b-top", tenant: "b", promptTokens: toks(4), priority: 1000 },
    ];
    const plan = planStep({ waiting: w, running: [], slots: freeSlots(1), stepTokens: 512, counters: new Map([["b", 50]]) });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["a-high"],
    );
  });

  test("a tenant at its slot cap waits while other tenants are admitted behind it", () => {
    const slots: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: [1], busy: true, lastUsed: 1 },
      ...freeSlots(2).map((s) => ({ ...s, index: s.index + 1 })),
    ];
    const input: SchedulerInput = {
      waiting: [waiting("a1", "a", 4), waiting("a2", "a", 4), waiting("b1", "b", 4)],
      running: [decoding("a0")],
      slots,
      stepTokens: 512,
      counters: new Map([["b", 1000]]),
      policies: policies({ id: "a", maxSlots: 2 }),
    };
    const plan = planStep(input);
    // a takes one more slot (its cap), then b gets the last one although a is further behind.
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["a1", "b1"],
    );
    // FIFO (no counters) skips a capped tenant the same way.
    const { counters: _c, ...fifo } = input;
    assert.deepEqual(
      planStep(fifo).admit.map((a) => a.id),
      ["a1", "b1"],
    );
  });

  test("slots reserved for a tenant stay free for it even when it has nothing waiting", () => {
    const plan = planStep({
      waiting: [waiting("a1", "a", 4), waiting("a2", "a", 4), waiting("a3", "a", 4)],
      running: [],
      slots: freeSlots(3),
      stepTokens: 512,
      counters: new Map(),
      policies: policies({ id: "b", reservedSlots: 1 }),
    });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["a1", "a2"],
    );
  });

  test("a reserved tenant gets its slot at once although the other tenant is further behind", () => {
    const slots: SlotView[] = [
      { index: 0, tenant: "a", cachedTokens: [1], busy: true, lastUsed: 1 },
      { index: 1, tenant: "a", cachedTokens: [1], busy: true, lastUsed: 1 },
      ...freeSlots(1).map((s) => ({ ...s, index: 2 })),
    ];
    const plan = planStep({
      waiting: [waiting("a1", "a", 4), waiting("b1", "b", 4)],
      running: [decoding("x"), decoding("y")],
      slots,
      stepTokens: 512,
      counters: new Map([
        ["a", 0],
        ["b", 1e9],
      ]),
      policies: policies({ id: "b", reservedSlots: 1 }),
    });
    assert.deepEqual(plan.admit, [{ id: "b1", slotIndex: 2, reuseTokens: 0, source: { kind: "fresh" } }]);
  });

  test("the step budget still bounds fair admissions", () => {
    const plan = planStep({
      waiting: [waiting("a1", "a", 20), waiting("b1", "b", 20), waiting("c1", "c", 20)],
      running: [decoding("d")],
      slots: freeSlots(3),
      stepTokens: 31,
      counters: new Map(),
    });
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["a1", "b1"],
    );
    assert.equal(stepTotal(plan), 31);
  });
});

describe("planStep: newcomer-first steps", () => {
  const decodingOf = (id: string, tenant: string): RunningView => ({ id, tenant, prefillRemaining: 0 });
  const slotsWithOneFree = (): SlotView[] => [busySlot(0), busySlot(1), ...freeSlots(3).slice(2)];

  test("a tenant with nothing decoding and the least service has its prompt read without the others' decodes", () => {
    const plan = planStep({
      waiting: [waiting("b1", "b", 32)],
      running: [decodingOf("a1", "a"), decodingOf("a2", "a")],
      slots: slotsWithOneFree(),
      stepTokens: 512,
      counters: new Map([
        ["a", 500],
        ["b", 500],
      ]),
    });
    assert.deepEqual(plan.prefill, [{ id: "b1", tokens: 32, final: true }]);
    assert.deepEqual(plan.decode, [], "the decoding streams wait this one step");
  });

  test("a tenant ahead of the decoding ones waits its turn in a shared step", () => {
    const plan = planStep({
      waiting: [waiting("b1", "b", 32)],
      running: [decodingOf("a1", "a")],
      slots: slotsWithOneFree(),
      stepTokens: 512,
      counters: new Map([
        ["a", 100],
        ["b", 101],
      ]),
    });
    assert.deepEqual(plan.decode, ["a1"]);
    assert.equal(plan.prefill.length, 1);
  });

  test("a tenant's own new request never pauses its other streams, nor does a prompt that needs more steps", () => {
    const own = planStep({
      waiting: [waiting("a3", "a", 8)],
      running: [decodingOf("a1", "a")],
      slots: slotsWithOneFree(),
      stepTokens: 512,
      counters: new Map([["a", 0]]),
    });
    assert.deepEqual(own.decode, ["a1"]);
    const long = planStep({
      waiting: [waiting("b1", "b", 600)],
      running: [decodingOf("a1", "a")],
      slots: slotsWithOneFree(),
      stepTokens: 64,
      counters: new Map([
        ["a", 10],
        ["b", 0],
      ]),
    });
    assert.deepEqual(long.decode, ["a1"], "chunked prefill keeps the streams going");
    assert.equal(long.prefill[0]!.final, false);
  });

  test("without tenant counters or running tenants, steps stay lockstep", () => {
    const noCounters = planStep({ waiting: [waiting("b1", "b", 8)], running: [decodingOf("a1", "a")], slots: slotsWithOneFree(), stepTokens: 512 });
    assert.deepEqual(noCounters.decode, ["a1"]);
    const anonymous = planStep({
      waiting: [waiting("b1", "b", 8)],
      running: [decoding("a1")],
      slots: slotsWithOneFree(),
      stepTokens: 512,
      counters: new Map(),
    });
    assert.deepEqual(anonymous.decode, ["a1"]);
  });
});
