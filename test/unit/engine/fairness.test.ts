// Fair scheduling (engine/fairness.ts): the virtual token counter, checked on
// its own and through planStep in a simulated lockstep engine.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  activate,
  charge,
  chargeAll,
  deactivate,
  FairPicker,
  INITIAL_FAIRNESS,
  orderWaiting,
  policyFor,
  type FairnessState,
  type TenantPolicies,
} from "../../../engine/fairness.js";
import { DEFAULT_FAIRNESS_COSTS, type FairnessCosts, type TenantPolicy } from "../../../engine/protocol.js";
import { planStep, type WaitingView } from "../../../engine/scheduler.js";
import type { SlotView } from "../../../engine/slots.js";

const counters = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));
const state = (o: Record<string, number>, floor = 0): FairnessState => ({ counters: counters(o), floor });
const policies = (...ps: Array<Partial<TenantPolicy> & { id: string }>): TenantPolicies =>
  new Map(ps.map((p) => [p.id, { weight: 1, reservedSlots: 0, maxSlots: null, ...p }]));
const req = (id: string, tenant: string, promptLength = 10, priority?: number): WaitingView => ({
  id,
  tenant,
  promptTokens: Array.from({ length: promptLength }, (_, i) => i + 1),
  ...(priority === undefined ? {} : { priority }),
});
const ids = (ws: readonly WaitingView[]): string[] => ws.map((w) => w.id);

describe("charge", () => {
  test("input tokens cost inputCost, output tokens outputCost (defaults 1 and 2), divided by the weight", () => {
    assert.deepEqual(DEFAULT_FAIRNESS_COSTS, { inputCost: 1, outputCost: 2 });
    const s1 = charge(INITIAL_FAIRNESS, "a", 100, 10, { weight: 1 });
    assert.equal(s1.counters.get("a"), 120);
    const s2 = charge(s1, "a", 10, 5, { weight: 2 });
    assert.equal(s2.counters.get("a"), 120 + (10 + 10) / 2);
    const s3 = charge(s2, "b", 0, 1, { weight: 0.5 });
    assert.equal(s3.counters.get("b"), 4);
    assert.equal(s3.counters.get("a"), 130);
  });

  test("costs are configurable", () => {
    const costs: FairnessCosts = { inputCost: 0.25, outputCost: 3 };
    assert.equal(charge(INITIAL_FAIRNESS, "a", 8, 2, { weight: 1 }, costs).counters.get("a"), 2 + 6);
    assert.equal(charge(INITIAL_FAIRNESS, "a", 8, 2, { weight: 4 }, costs).counters.get("a"), 2);
  });

  test("returns new state and leaves its input untouched", () => {
    const before = state({ a: 5 });
    const after = charge(before, "a", 1, 1, { weight: 1 });
    assert.equal(before.counters.get("a"), 5);
    assert.equal(after.counters.get("a"), 8);
  });

  test("chargeAll charges each tenant with its own weight; unknown tenants weigh 1", () => {
    const s = chargeAll(
      state({ a: 1 }),
      [
        { tenant: "a", inputTokens: 4, outputTokens: 1 },
        { tenant: "b", inputTokens: 4, outputTokens: 1 },
        { tenant: "a", inputTokens: 0, outputTokens: 2 },
      ],
      policies({ id: "a", weight: 2 }),
    );
    assert.equal(s.counters.get("a"), 1 + 3 + 2);
    assert.equal(s.counters.get("b"), 6);
  });

  test("unknown tenants get weight 1, no reservation, no cap", () => {
    assert.deepEqual(policyFor(undefined, "x"), { id: "x", weight: 1, reservedSlots: 0, maxSlots: null });
    assert.deepEqual(policyFor(policies({ id: "a", weight: 3 }), "x"), { id: "x", weight: 1, reservedSlots: 0, maxSlots: null });
    assert.equal(policyFor(policies({ id: "a", weight: 3 }), "a").weight, 3);
  });
});

describe("activate / deactivate: no banking credit while idle", () => {
  test("a returning tenant is lifted to the smallest counter among the active tenants", () => {
    const s = activate(state({ a: 500, b: 300, c: 10 }), "c", ["a", "b"]);
    assert.equal(s.counters.get("c"), 300);
  });

  test("a tenant already above the minimum keeps its counter", () => {
    const s = activate(state({ a: 500, b: 300, c: 900 }), "c", ["a", "b"]);
    assert.equal(s.counters.get("c"), 900);
  });

  test("a never-seen tenant starts at the minimum too, not at 0", () => {
    assert.equal(activate(state({ a: 500 }), "new", ["a"]).counters.get("new"), 500);
  });

  test("with nobody active, the floor left by the last tenant to go idle applies", () => {
    let s = state({ a: 1000, b: 20 });
    s = deactivate(s, "a", ["b"]); // b still active: no floor yet
    assert.equal(s.floor, 0);
    s = deactivate(s, "b", []); // b was the last one
    assert.equal(s.floor, 20);
    s = charge(s, "a", 0, 0, { weight: 1 });
    const c = activate({ ...s, counters: counters({ a: 1000, b: 20, c: 0 }) }, "c", []);
    assert.equal(c.counters.get("c"), 20);
  });

  test("the floor never goes down", () => {
    const s = deactivate(state({ a: 5 }, 50), "a", []);
    assert.equal(s.floor, 50);
  });

  test("the tenant itself in othersActive is ignored", () => {
    assert.equal(activate(state({ a: 5, b: 50 }), "a", ["a", "b"]).counters.get("a"), 50);
    assert.equal(deactivate(state({ a: 70 }), "a", ["a"]).floor, 70);
  });
});

describe("orderWaiting", () => {
  test("the tenant with the smallest counter goes first", () => {
    const w = [req("a1", "a"), req("b1", "b")];
    assert.deepEqual(ids(orderWaiting(w, counters({ a: 50, b: 10 }))), ["b1", "a1"]);
    assert.deepEqual(ids(orderWaiting(w, counters({ a: 10, b: 50 }))), ["a1", "b1"]);
  });

  test("equal counters: arrival order; each admission raises its tenant's counter, so tenants interleave", () => {
    const w = [req("a1", "a"), req("a2", "a"), req("a3", "a"), req("b1", "b"), req("b2", "b")];
    assert.deepEqual(ids(orderWaiting(w, counters({}))), ["a1", "b1", "a2", "b2", "a3"]);
  });

  test("a weight of 2 gets two admissions for every one of a weight-1 tenant", () => {
    const w = [...["a1", "a2", "a3", "a4", "a5", "a6"].map((id) => req(id, "a")), ...["b1", "b2", "b3"].map((id) => req(id, "b"))];
    const order = ids(orderWaiting(w, counters({}), policies({ id: "a", weight: 2 })));
    assert.deepEqual(order, ["a1", "b1", "a2", "a3", "b2", "a4", "a5", "b3", "a6"]);
  });

  test("a big prompt costs its tenant more turns", () => {
    const w = [req("a1", "a", 100), req("a2", "a", 10), req("b1", "b", 10), req("b2", "b", 10), req("b3", "b", 10)];
    assert.deepEqual(ids(orderWaiting(w, counters({}))), ["a1", "b1", "b2", "b3", "a2"]);
  });

  test("priority orders requests within a tenant, higher first, then arrival", () => {
    const w = [req("a1", "a", 10, 0), req("a2", "a", 10, 5), req("a3", "a", 10), req("a4", "a", 10, 5), req("a5", "a", 10, -1)];
    assert.deepEqual(ids(orderWaiting(w, counters({}))), ["a2", "a4", "a1", "a3", "a5"]);
  });

  test("priority never crosses tenants: a high-priority request of a tenant that is ahead still waits its turn", () => {
    const w = [req("a1", "a"), req("b1", "b", 10, 1000), req("a2", "a")];
    // b has been served more: its top-priority request comes after a's.
    assert.deepEqual(ids(orderWaiting(w, counters({ a: 0, b: 5 }))), ["a1", "b1", "a2"]);
    assert.deepEqual(ids(orderWaiting(w, counters({ a: 0, b: 100 }))), ["a1", "a2", "b1"]);
  });

  test("costs change the order: output-heavy service weighs more with a higher outputCost", () => {
    // a was served 100 prompt tokens, b 40 output tokens.
    const served = (costs: FairnessCosts) =>
      chargeAll(
        INITIAL_FAIRNESS,
        [
          { tenant: "a", inputTokens: 100, outputTokens: 0 },
          { tenant: "b", inputTokens: 0, outputTokens: 40 },
        ],
        undefined,
        costs,
      );
    const w = [req("a1", "a"), req("b1", "b")];
    assert.deepEqual(ids(orderWaiting(w, served(DEFAULT_FAIRNESS_COSTS).counters)), ["b1", "a1"]); // 100 vs 80
    assert.deepEqual(ids(orderWaiting(w, served({ inputCost: 1, outputCost: 3 }).counters)), ["a1", "b1"]); // 100 vs 120
  });

  test("the input list is not reordered or mutated", () => {
    const w = [req("a1", "a"), req("b1", "b", 10, 3)];
    const snapshot = JSON.stringify(w);
    orderWaiting(w, counters({ a: 9 }));
    assert.equal(JSON.stringify(w), snapshot);
  });
});

describe("FairPicker", () => {
  test("take charges what the admission really costs; skipTenant drops a tenant for this plan", () => {
    const w = [req("a1", "a", 100), req("a2", "a"), req("b1", "b", 100), req("c1", "c")];
    const p = new FairPicker(w, counters({ c: 5 }), undefined);
    assert.equal(p.peek()!.id, "a1");
    p.take(2); // a1 reused 98 tokens of its prompt: a's counter is 2
    assert.equal(p.peek()!.id, "b1");
    p.skipTenant("b");
    assert.equal(p.peek()!.id, "a2");
    p.take(10);
    assert.equal(p.peek()!.id, "c1");
    p.take(1);
    assert.equal(p.peek(), undefined);
  });
});

// A lockstep engine in miniature: planStep plans, the loop carries it out and
// charges counters as prefill is evaluated and tokens are sampled.
interface SimTenant {
  id: string;
  /** Closed loop: requests kept in flight (waiting + running). */
  inFlight: number;
  promptTokens: number;
  outputTokens: number;
  fromStep?: number;
  toStep?: number;
}
interface SimRequest {
  id: string;
  tenant: string;
  prompt: number[];
  priority: number;
  submitted: number;
  prefillRemaining: number;
  outputLeft: number;
  slot: number | null;
  firstToken: number | null;
}
interface SimResult {
  /** Output tokens per tenant per step. */
  output: Array<Map<string, number>>;
  /** Steps from submission to first token, per tenant. */
  ttftSteps: Map<string, number[]>;
}

function simulate(opts: {
  slots: number;
  stepTokens: number;
  steps: number;
  tenants: SimTenant[];
  policies?: TenantPolicies;
  costs?: FairnessCosts;
  fair?: boolean;
  /** Turn the lift off, to show what it prevents. */
  lift?: boolean;
}): SimResult {
  const fair = opts.fair ?? true;
  let fs: FairnessState = INITIAL_FAIRNESS;
  let slots: SlotView[] = Array.from({ length: opts.slots }, (_, index) => ({ index, tenant: null, cachedTokens: [], busy: false, lastUsed: 0 }));
  let waiting: SimRequest[] = [];
  const running = new Map<string, SimRequest>();
  const active = new Map<string, number>();
  const result: SimResult = { output: [], ttftSteps: new Map(opts.tenants.map((t) => [t.id, []])) };
  let seq = 0;
  const bump = (tenant: string, d: 1 | -1) => {
    const n = (active.get(tenant) ?? 0) + d;
    if (n === 0) active.delete(tenant);
    else active.set(tenant, n);
    if (d === 1 && n === 1 && opts.lift !== false) fs = activate(fs, tenant, active.keys());
    if (d === -1 && n === 0) fs = deactivate(fs, tenant, active.keys());
  };
  for (let step = 0; step < opts.steps; step++) {
    for (const t of opts.tenants) {
      if (step < (t.fromStep ?? 0) || step >= (t.toStep ?? Infinity)) continue;
      while ((active.get(t.id) ?? 0) < t.inFlight) {
        seq++;
        const prompt = Array.from({ length: t.promptTokens }, (_, i) => seq * 1000 + i);
        waiting.push({
          id: `${t.id}${seq}`,
          tenant: t.id,
          prompt,
          priority: 0,
          submitted: step,
          prefillRemaining: prompt.length,
          outputLeft: t.outputTokens,
          slot: null,
          firstToken: null,
        });
        bump(t.id, 1);
      }
    }
    const plan = planStep({
      waiting: waiting.map((w) => ({ id: w.id, tenant: w.tenant, priority: w.priority, promptTokens: w.prompt })),
      running: [...running.values()].map((r) => ({ id: r.id, prefillRemaining: r.prefillRemaining })),
      slots,
      stepTokens: opts.stepTokens,
      ...(fair ? { counters: fs.counters } : {}),
      ...(opts.policies ? { policies: opts.policies } : {}),
      ...(opts.costs ? { costs: opts.costs } : {}),
    });
    for (const a of plan.admit) {
      const r = waiting.find((w) => w.id === a.id)!;
      waiting = waiting.filter((w) => w !== r);
      r.slot = a.slotIndex;
      r.prefillRemaining -= a.reuseTokens;
      running.set(r.id, r);
      slots = slots.map((s) => (s.index === a.slotIndex ? { ...s, busy: true, tenant: r.tenant, cachedTokens: r.prompt } : s));
    }
    const out = new Map<string, number>();
    const charges: Array<{ tenant: string; inputTokens: number; outputTokens: number }> = [];
    const sample = (r: SimRequest) => {
      r.outputLeft--;
      if (r.firstToken === null) {
        r.firstToken = step;
        result.ttftSteps.get(r.tenant)!.push(step - r.submitted);
      }
      out.set(r.tenant, (out.get(r.tenant) ?? 0) + 1);
      charges.push({ tenant: r.tenant, inputTokens: 0, outputTokens: 1 });
    };
    for (const c of plan.prefill) {
      const r = running.get(c.id)!;
      r.prefillRemaining -= c.tokens;
      charges.push({ tenant: r.tenant, inputTokens: c.tokens, outputTokens: 0 });
      if (c.final) sample(r);
    }
    for (const id of plan.decode) sample(running.get(id)!);
    fs = chargeAll(fs, charges, opts.policies, opts.costs);
    for (const r of [...running.values()]) {
      if (r.outputLeft > 0) continue;
      running.delete(r.id);
      slots = slots.map((s) => (s.index === r.slot ? { ...s, busy: false, lastUsed: step } : s));
      bump(r.tenant, -1);
    }
    result.output.push(out);
  }
  return result;
}

const served = (r: SimResult, tenant: string, from = 0, to = r.output.length): number => r.output.slice(from, to).reduce((n, m) => n + (m.get(tenant) ?? 0), 0);
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("fair scheduling in a simulated lockstep engine", () => {
  const shape = { promptTokens: 16, outputTokens: 32 };

  test("two backlogged tenants of equal weight get equal service over time", () => {
    const r = simulate({
      slots: 4,
      stepTokens: 64,
      steps: 4000,
      tenants: [
        { id: "a", inFlight: 8, ...shape },
        { id: "b", inFlight: 8, ...shape },
      ],
    });
    const a = served(r, "a");
    const b = served(r, "b");
    assert.ok(a > 1000 && b > 1000, `a ${a} b ${b}`);
    assert.ok(Math.abs(a / b - 1) < 0.05, `a ${a} b ${b}`);
  });

  test("equal service holds when one tenant floods the queue (16 in flight vs 4)", () => {
    const r = simulate({
      slots: 4,
      stepTokens: 64,
      steps: 4000,
      tenants: [
        { id: "a", inFlight: 16, ...shape },
        { id: "b", inFlight: 4, ...shape },
      ],
    });
    assert.ok(Math.abs(served(r, "a") / served(r, "b") - 1) < 0.05, `a ${served(r, "a")} b ${served(r, "b")}`);
    // FIFO gives the flooding tenant its queue share instead.
    const fifo = simulate({
      slots: 4,
      stepTokens: 64,
      steps: 4000,
      fair: false,
      tenants: [
        { id: "a", inFlight: 16, ...shape },
        { id: "b", inFlight: 4, ...shape },
      ],
    });
    assert.ok(served(fifo, "a") / served(fifo, "b") > 2.5, `fifo a ${served(fifo, "a")} b ${served(fifo, "b")}`);
  });

  test("weight 2 gets about twice the service of weight 1", () => {
    const r = simulate({
      slots: 6,
      stepTokens: 64,
      steps: 6000,
      tenants: [
        { id: "a", inFlight: 12, ...shape },
        { id: "b", inFlight: 12, ...shape },
      ],
      policies: policies({ id: "a", weight: 2 }),
    });
    const ratio = served(r, "a") / served(r, "b");
    assert.ok(ratio > 1.85 && ratio < 2.15, `ratio ${ratio}`);
  });

  test("a light tenant's requests do not queue behind a heavy tenant's backlog", () => {
    const tenants: SimTenant[] = [
      { id: "heavy", inFlight: 16, ...shape },
      { id: "light", inFlight: 1, ...shape },
    ];
    const fairRun = simulate({ slots: 4, stepTokens: 64, steps: 3000, tenants });
    const fifoRun = simulate({ slots: 4, stepTokens: 64, steps: 3000, tenants, fair: false });
    const fairTtft = fairRun.ttftSteps.get("light")!;
    const fifoTtft = fifoRun.ttftSteps.get("light")!;
    // Fair: at most until the next slot frees (every request lasts 32 steps).
    assert.ok(Math.max(...fairTtft) <= shape.outputTokens + 1, `fair light TTFT max ${Math.max(...fairTtft)}`);
    // FIFO: behind the heavy backlog, several request lifetimes.
    assert.ok(mean(fifoTtft) > 3 * mean(fairTtft) && mean(fifoTtft) > 80, `fifo ${mean(fifoTtft)} vs fair ${mean(fairTtft)}`);
  });

  test("a tenant returning after idling cannot bank credit: it shares equally at once", () => {
    const tenants: SimTenant[] = [
      { id: "a", inFlight: 8, ...shape },
      { id: "b", inFlight: 8, ...shape, fromStep: 3000 },
    ];
    const r = simulate({ slots: 4, stepTokens: 64, steps: 4500, tenants });
    // The first 300 steps after b arrives: no monopoly by b.
    const a = served(r, "a", 3000, 3300);
    const b = served(r, "b", 3000, 3300);
    assert.ok(a > 0.35 * (a + b) && b > 0.35 * (a + b), `after return: a ${a} b ${b}`);
    assert.ok(Math.abs(served(r, "a", 3000) / served(r, "b", 3000) - 1) < 0.1);
    // Without the lift, b would take every slot until its counter caught up.
    const banked = simulate({ slots: 4, stepTokens: 64, steps: 4500, tenants, lift: false });
    assert.equal(served(banked, "a", 3100, 3300), 0);
  });

  test("arriving at an idle engine, a new tenant starts at the floor, not at 0", () => {
    // a runs alone, the engine empties, b arrives, then a comes back.
    const tenants: SimTenant[] = [
      { id: "a", inFlight: 8, ...shape, toStep: 1000 },
      { id: "b", inFlight: 8, ...shape, fromStep: 1200 },
      { id: "a", inFlight: 8, ...shape, fromStep: 1300 },
    ];
    const r = simulate({ slots: 4, stepTokens: 64, steps: 1800, tenants });
    assert.equal(served(r, "a", 1100, 1200) + served(r, "b", 1100, 1200), 0, "the engine was idle");
    const a = served(r, "a", 1350, 1550);
    const b = served(r, "b", 1350, 1550);
    assert.ok(a > 0.35 * (a + b) && b > 0.35 * (a + b), `a ${a} b ${b}`);
  });
});
