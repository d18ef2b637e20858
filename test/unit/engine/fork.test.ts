// n > 1 choices sharing their prompt (engine/fork.ts, engine/forkGroups.ts):
// which waiting members are held, which copy their leader's state, which run
// on their own; and what planning charges a member that copies.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LlamaContextSequence } from "node-llama-cpp";
import { assertCanCopyState, copyPromptState, forkDecision } from "../../../engine/fork.js";
import { ForkGroups, type JobPlace } from "../../../engine/forkGroups.js";
import type { Job } from "../../../engine/job.js";
import { planStep, type WaitingView } from "../../../engine/scheduler.js";
import type { SlotView } from "../../../engine/slots.js";

const toks = (n: number, start = 1): number[] => Array.from({ length: n }, (_, i) => start + i);

/** The fields ForkGroups reads; the rest of a Job is the engine's business. */
function job(id: string, prompt: number[], fork: { group: string; index: number } | null, extra: Partial<Job> = {}): Job {
  return { id, tenant: "t", priority: 0, prompt, fork, cancelled: false, evaluated: 0, slot: null, ...extra } as unknown as Job;
}

/** Slot `index` holding `tokens` (what ForkGroups reads of a running leader's slot). */
const slotHolding = (index: number, tokens: number[]): Job["slot"] => ({ index, seq: { contextTokens: tokens } }) as unknown as Job["slot"];
/** What a view says its request copies: [leader, slot, tokens], or undefined. */
const copyOf = (v: WaitingView) => (v.copy ? [v.copy.leader, v.copy.fromSlot, v.copy.tokens] : undefined);

describe("forkDecision", () => {
  test("a member waits for a leader that is waiting or still reading the prompt", () => {
    assert.deepEqual(forkDecision(10, { state: "waiting" }), { kind: "held" });
    assert.deepEqual(forkDecision(10, { state: "running", evaluated: 0 }), { kind: "held" });
    assert.deepEqual(forkDecision(10, { state: "running", evaluated: 8 }), { kind: "held" });
  });

  test("once the leader has read all but the last prompt token, the member copies that much", () => {
    assert.deepEqual(forkDecision(10, { state: "running", evaluated: 9 }), { kind: "copy", sharedTokens: 9 });
    // Decoding: the slot still starts with the whole prompt.
    assert.deepEqual(forkDecision(10, { state: "running", evaluated: 10 }), { kind: "copy", sharedTokens: 9 });
  });

  test("no leader, or a one-token prompt (nothing to share): the member runs on its own", () => {
    assert.deepEqual(forkDecision(10, null), { kind: "solo" });
    assert.deepEqual(forkDecision(1, { state: "waiting" }), { kind: "solo" });
    assert.deepEqual(forkDecision(1, { state: "running", evaluated: 1 }), { kind: "solo" });
  });
});

describe("ForkGroups", () => {
  /** A group of n over `prompt`, linked as the engine links them at submit. */
  function group(n: number, prompt = toks(10)): { forks: ForkGroups; jobs: Job[] } {
    const forks = new ForkGroups();
    const jobs = Array.from({ length: n }, (_, index) => job(`c${index}`, prompt, { group: "g", index }));
    for (const j of jobs) forks.link(j);
    return { forks, jobs };
  }
  const ids = (views: { id: string }[]) => views.map((v) => v.id);

  test("members are held while the leader waits; the leader and unrelated requests are plannable", () => {
    const { forks, jobs } = group(3);
    const other = job("other", toks(5), null);
    const views = forks.plannable([...jobs, other], () => "waiting");
    assert.deepEqual(ids(views), ["c0", "other"]);
  });

  test("members stay held while the running leader reads its prompt, then copy all but its last token", () => {
    const { forks, jobs } = group(3);
    const [leader, ...members] = jobs;
    const place = (j: Job): JobPlace => (j === leader ? "running" : "waiting");
    leader!.slot = slotHolding(2, toks(4));
    leader!.evaluated = 4;
    assert.deepEqual(ids(forks.plannable(members, place)), []);
    leader!.slot = slotHolding(2, toks(9));
    leader!.evaluated = 9;
    const views = forks.plannable(members, place);
    assert.deepEqual(
      views.map((v) => [v.id, copyOf(v)]),
      [
        ["c1", ["c0", 2, 9]],
        ["c2", ["c0", 2, 9]],
      ],
      "planning chose the leader's slot as the copy source",
    );
  });

  test("a cancelled or departed leader holds no one back: its members run on their own", () => {
    const { forks, jobs } = group(2);
    const [leader, member] = jobs;
    leader!.cancelled = true;
    let views = forks.plannable([member!], () => "waiting");
    assert.deepEqual(
      views.map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
    );
    leader!.cancelled = false;
    views = forks.plannable([member!], (j) => (j === leader ? "gone" : "waiting"));
    assert.deepEqual(
      views.map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
      "a solo member copies nothing",
    );
  });

  test("a forgotten leader frees its group: a member submitted later does not wait on it", () => {
    const forks = new ForkGroups();
    const leader = job("c0", toks(10), { group: "g", index: 0 });
    forks.link(leader);
    forks.forget(leader);
    const member = job("c1", toks(10), { group: "g", index: 1 });
    forks.link(member);
    assert.deepEqual(ids(forks.plannable([member], () => "waiting")), ["c1"]);
  });

  test("a member whose prompt differs from its leader's is never linked to it", () => {
    const forks = new ForkGroups();
    const leader = job("c0", toks(10), { group: "g", index: 0 });
    const member = job("c1", toks(10, 2), { group: "g", index: 1 });
    forks.link(leader);
    forks.link(member);
    assert.deepEqual(ids(forks.plannable([leader, member], () => "waiting")), ["c0", "c1"]);
  });

  test("a member of another tenant is never linked: KV state does not cross tenants", () => {
    const forks = new ForkGroups();
    const leader = job("c0", toks(10), { group: "g", index: 0 }, { evaluated: 10 });
    const member = job("c1", toks(10), { group: "g", index: 1 }, { tenant: "other" });
    forks.link(leader);
    forks.link(member);
    leader.slot = slotHolding(0, toks(10));
    const views = forks.plannable([member], (j) => (j === leader ? "running" : "waiting"));
    assert.deepEqual(
      views.map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
    );
  });

  test("the source travels in the view alone: planning it again, nothing was consumed", () => {
    const { forks, jobs } = group(2);
    const [leader, member] = jobs;
    leader!.slot = slotHolding(1, toks(10));
    leader!.evaluated = 10;
    const place = (j: Job): JobPlace => (j === leader ? "running" : "waiting");
    assert.deepEqual(forks.plannable([member!], place).map(copyOf), [["c0", 1, 9]]);
    assert.deepEqual(forks.plannable([member!], place).map(copyOf), [["c0", 1, 9]]);
  });

  test("copy sources are chosen anew each step: a member planned to copy but not admitted does not keep a stale one", () => {
    const { forks, jobs } = group(2);
    const [leader, member] = jobs;
    leader!.slot = slotHolding(1, toks(10));
    leader!.evaluated = 10;
    forks.plannable([member!], (j) => (j === leader ? "running" : "waiting"));
    const views = forks.plannable([member!], (j) => (j === leader ? "gone" : "waiting"));
    assert.deepEqual(
      views.map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
    );
  });

  test("a running leader whose slot does not hold the prompt is not copied: the member runs on its own", () => {
    const { forks, jobs } = group(2);
    const [leader, member] = jobs;
    leader!.evaluated = 10;
    const place = (j: Job): JobPlace => (j === leader ? "running" : "waiting");
    leader!.slot = slotHolding(1, toks(10, 5));
    assert.deepEqual(
      forks.plannable([member!], place).map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
    );
    leader!.slot = null;
    assert.deepEqual(
      forks.plannable([member!], place).map((v) => [v.id, copyOf(v)]),
      [["c1", undefined]],
    );
  });
});

describe("planStep with members that copy", () => {
  const freeSlots = (n: number): SlotView[] => Array.from({ length: n }, (_, index) => ({ index, tenant: null, cachedTokens: [], busy: false, lastUsed: 0 }));

  test("a member that copies is charged only the tokens it evaluates", () => {
    const prompt = toks(100);
    const plan = planStep({
      waiting: [
        { id: "m1", tenant: "t", promptTokens: prompt, copy: { leader: "leader", fromSlot: 3, tokens: 99 } },
        { id: "m2", tenant: "t", promptTokens: prompt, copy: { leader: "leader", fromSlot: 3, tokens: 99 } },
        { id: "solo", tenant: "t", promptTokens: prompt },
      ],
      running: [{ id: "leader", prefillRemaining: 0 }],
      slots: freeSlots(3),
      stepTokens: 40,
    });
    assert.deepEqual(plan.decode, ["leader"]);
    assert.deepEqual(
      plan.admit.map((a) => a.id),
      ["m1", "m2", "solo"],
    );
    assert.deepEqual(
      plan.admit.map((a) => a.source),
      [{ kind: "copy", leader: "leader", fromSlot: 3, tokens: 99 }, { kind: "copy", leader: "leader", fromSlot: 3, tokens: 99 }, { kind: "fresh" }],
    );
    assert.deepEqual(plan.prefill, [
      { id: "m1", tokens: 1, final: true },
      { id: "m2", tokens: 1, final: true },
      { id: "solo", tokens: 37, final: false },
    ]);
  });

  test("a slot cache that serves more than the copy counts instead", () => {
    const prompt = toks(100);
    const slots: SlotView[] = [{ index: 0, tenant: "t", cachedTokens: prompt, busy: false, lastUsed: 1 }];
    const plan = planStep({
      waiting: [{ id: "m", tenant: "t", promptTokens: prompt, copy: { leader: "l", fromSlot: 1, tokens: 50 } }],
      running: [],
      slots,
      stepTokens: 512,
    });
    assert.deepEqual(plan.admit, [{ id: "m", slotIndex: 0, reuseTokens: 99, source: { kind: "slot", keepTokens: 99 } }]);
    assert.deepEqual(plan.prefill, [{ id: "m", tokens: 1, final: true }]);
  });
});

describe("copying a prompt's state (node-llama-cpp's internal copy)", () => {
  /** A sequence whose copy answers `result` (or throws it) and then holds `after` tokens. */
  const seq = (result: boolean | Error, after: number): LlamaContextSequence =>
    ({
      nextTokenIndex: 0,
      async _copyStateFromOtherSequence(this: { nextTokenIndex: number }) {
        this.nextTokenIndex = after;
        if (result instanceof Error) throw result;
        return result;
      },
    }) as unknown as LlamaContextSequence;
  const source = {} as LlamaContextSequence;

  test("the engine refuses to start without the method it relies on", () => {
    assert.throws(() => assertCanCopyState({} as LlamaContextSequence), /_copyStateFromOtherSequence/);
    assert.doesNotThrow(() => assertCanCopyState(seq(true, 9)));
  });

  test("only a copy that reports success and holds exactly the tokens asked for counts", async () => {
    assert.equal(await copyPromptState(seq(true, 9), source, 9), true);
    assert.equal(await copyPromptState(seq(false, 9), source, 9), false);
    assert.equal(await copyPromptState(seq(true, 12), source, 9), false, "a tail left behind is a half copy");
    assert.equal(await copyPromptState(seq(new Error("native failure"), 3), source, 9), false);
  });
});
