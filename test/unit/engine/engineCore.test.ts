// The step loop (engine/engineCore.ts) carrying out its plans on fake
// sequences (helpers/fakeSequence.ts): every admission source (fresh, the
// slot's cache, a saved state, a fork leader's copy), the swaps through a real
// KvStateStore, the failures of each, and a stall. The fake samples from all
// the state a sequence holds, so an answer served from a kept, restored or
// copied state equals the fresh one only when that state is right.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import type { EngineCore } from "../../../engine/engineCore.js";
import { KvStateStore } from "../../../engine/kvStore.js";
import { planStep } from "../../../engine/scheduler.js";
import { expectedText, fakeEngine } from "./helpers/fakeSequence.js";

const toks = (n: number, start = 1): number[] => Array.from({ length: n }, (_, i) => ((start + i - 1) % 26) + 1);
/** The log lines of one slot, in order. */
const of = (log: string[], slot: number) => log.filter((l) => l.startsWith(`${slot} `)).map((l) => l.slice(String(slot).length + 1));

let engines: EngineCore[] = [];
let dirs: string[] = [];
beforeEach(() => {
  engines = [];
  dirs = [];
});
afterEach(async () => {
  for (const e of engines.reverse()) await e.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function engineWith(...args: Parameters<typeof fakeEngine>) {
  const made = fakeEngine(...args);
  engines.push(made.engine);
  return made;
}

async function store(): Promise<KvStateStore> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-engine-core-"));
  dirs.push(dir);
  return KvStateStore.open(dir, "fake-model", 1 << 20);
}

describe("admission sources, carried out as planned", () => {
  test("fresh: the slot is cleared and the whole prompt read; the slot's own cache is then kept for a continuation", async () => {
    const { engine, runtime, run } = engineWith({ slots: 1 });
    const first = toks(40);
    const a = await run("t", first);
    assert.equal(a.text, expectedText(first, 4));
    assert.equal(a.usage?.cachedTokens, 0);
    // Tokens 27 and 28 are never sampled (the fake samples 1..26): the shared prefix is exactly the first prompt.
    const next = [...first, 27, 28];
    const b = await run("t", next);
    assert.equal(b.text, expectedText(next, 4), "the kept cache is the right one");
    assert.equal(b.usage?.cachedTokens, 40);
    assert.deepEqual(of(runtime.log, 0), ["clear", "generate 40", "keep 40", "generate 2"]);
    assert.equal(engine.stats().prefixHits, 1);
  });

  test("a long prompt is read in the plan's chunks, the last one sampled", async () => {
    const { runtime, run } = engineWith({ slots: 1, stepTokens: 16 });
    const prompt = toks(40);
    const a = await run("t", prompt);
    assert.equal(a.text, expectedText(prompt, 4));
    assert.deepEqual(of(runtime.log, 0), ["clear", "prefill 16", "prefill 16", "generate 8"]);
  });

  test("swap: an evicted conversation is saved, and restored into the slot when it continues", async () => {
    const kv = await store();
    const { runtime, run } = engineWith({ slots: 1 }, kv);
    const conversation = toks(40);
    await run("t", conversation);
    // Another tenant takes the only slot: what it held (40 + 3 tokens) is saved first.
    const other = toks(10, 5);
    assert.equal((await run("u", other)).text, expectedText(other, 4));
    assert.deepEqual(of(runtime.log, 0).slice(2), ["save 43", "clear", "generate 10"]);
    const next = [...conversation, 27, 28];
    const b = await run("t", next);
    assert.equal(b.text, expectedText(next, 4), "the restored state is the saved one");
    assert.equal(b.usage?.cachedTokens, 40);
    // The other tenant's 13 tokens are not worth saving; the slot is emptied, loaded, and the 43 restored tokens cut to the 40 the prompt shares.
    assert.deepEqual(of(runtime.log, 0).slice(5), ["clear", "load", "keep 40", "generate 2"]);
    assert.equal(kv.stats().restored, 1);
  });

  test("a restore that fails leaves the slot cleared, and the whole prompt is read from the next step", async () => {
    const kv = await store();
    const { runtime, run } = engineWith({ slots: 1 }, kv);
    const conversation = toks(40);
    await run("t", conversation);
    await run("u", toks(10, 5));
    runtime.sequences[0]!.loadFails = true;
    const next = [...conversation, 27, 28];
    const b = await run("t", next);
    assert.equal(b.text, expectedText(next, 4));
    assert.equal(b.usage?.cachedTokens, 0, "nothing of the failed restore is counted as cached");
    assert.deepEqual(of(runtime.log, 0).slice(5), ["clear", "load", "clear", "clear", "generate 42"]);
    assert.equal(kv.stats().discarded, 1);
  });

  test("copy: a fork member waits for its leader to read the prompt, then copies all but its last token", async () => {
    const { runtime, run } = engineWith({ slots: 2 });
    const prompt = toks(20);
    const [leader, member] = await Promise.all([run("t", prompt, { fork: { group: "g", index: 0 } }), run("t", prompt, { fork: { group: "g", index: 1 } })]);
    assert.equal(leader.text, expectedText(prompt, 4));
    assert.equal(member.text, expectedText(prompt, 4), "the copied state is the leader's prompt");
    assert.equal(member.usage?.cachedTokens, 19);
    assert.deepEqual(of(runtime.log, 1), ["copy 19 from 0", "generate 1"]);
  });

  test("a copy that fails leaves the slot cleared, and the member reads the whole prompt itself", async () => {
    const { runtime, run } = engineWith({ slots: 2 });
    runtime.sequences[1]!.copyFails = true;
    const prompt = toks(20);
    const [, member] = await Promise.all([run("t", prompt, { fork: { group: "g", index: 0 } }), run("t", prompt, { fork: { group: "g", index: 1 } })]);
    assert.equal(member.text, expectedText(prompt, 4), "no half copy is used");
    assert.equal(member.usage?.cachedTokens, 0);
    assert.deepEqual(of(runtime.log, 1), ["copy 19 from 0", "clear", "generate 20"]);
  });
});

describe("failures", () => {
  test("a failed decode fails every request in it and clears their slots; the engine goes on", async () => {
    const { runtime, run } = engineWith({ slots: 2 });
    runtime.sequences[0]!.fail = "decode";
    const [a, b] = await Promise.all([run("t", toks(10)), run("u", toks(12, 3))]);
    for (const o of [a, b]) {
      assert.equal(o.error?.code, "engine_error");
      assert.match(o.error?.message ?? "", /Eval has failed/);
    }
    assert.deepEqual(of(runtime.log, 0).slice(-1), ["clear"]);
    assert.deepEqual(of(runtime.log, 1).slice(-1), ["clear"]);
    const prompt = toks(10);
    const c = await run("t", prompt);
    assert.equal(c.text, expectedText(prompt, 4));
    assert.equal(c.usage?.cachedTokens, 0, "a failed slot's cache is never reused");
  });

  test("a sampling failure is its own request's: the request beside it finishes", async () => {
    const { runtime, run } = engineWith({ slots: 2 });
    runtime.sequences[1]!.fail = "sample";
    runtime.samplingErrors = ["Unexpected empty grammar stack"];
    const okPrompt = toks(10);
    // One tenant: admitted in arrival order, into slots 0 and 1.
    const [ok, failed] = await Promise.all([run("t", okPrompt), run("t", toks(12, 3))]);
    assert.equal(ok.text, expectedText(okPrompt, 4));
    assert.equal(ok.finish, "length");
    assert.equal(failed.error?.code, "engine_error");
    assert.match(failed.error?.message ?? "", /sampling failed: Unexpected empty grammar stack/);
  });
});

describe("preemption", () => {
  test("an interactive request that finds the only slot held by batch work takes it in the same step; the batch request is told to retry", async () => {
    const { engine, runtime, run } = engineWith({ slots: 1 });
    const batch = run("b", toks(10), { priorityClass: "batch", maxTokens: 200 });
    while (engine.stats().running === 0) await engine.nextTurn();
    const prompt = toks(12, 4);
    const interactive = await run("t", prompt);
    assert.equal(interactive.text, expectedText(prompt, 4));
    assert.equal((await batch).error?.code, "batch_preempted");
    // Another tenant's cache is never kept: the slot is cleared for it.
    assert.deepEqual(of(runtime.log, 0).slice(0, 2), ["clear", "generate 10"]);
    assert.deepEqual(of(runtime.log, 0).slice(-2), ["clear", "generate 12"]);
  });
});

describe("stall", () => {
  test("a request no slot may take stalls the loop without evaluating anything, and a policy change resumes it", async () => {
    const { engine, runtime, run } = engineWith({ slots: 1 });
    engine.setTenantPolicies([{ id: "owner", weight: 1, reservedSlots: 1, maxSlots: null }]);
    const prompt = toks(10);
    const pending = run("t", prompt);
    for (let i = 0; i < 5; i++) await engine.nextTurn();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(engine.stats().waiting, 1);
    assert.equal(engine.stats().running, 0);
    assert.deepEqual(runtime.log, [], "nothing is evaluated while stalled");
    engine.setTenantPolicies([]);
    const a = await pending;
    assert.equal(a.text, expectedText(prompt, 4));
  });

  test("stop() disposes of the runtime after the loop", async () => {
    const { engine, runtime, run } = engineWith({ slots: 1 });
    await run("t", toks(5));
    await engine.stop();
    assert.equal(runtime.disposed, true);
  });
});

describe("planStep decides restores and saves", () => {
  const saved = [{ id: "s1", tenant: "t", tokens: toks(40), bytes: 100, lastUsed: 1 }];
  const otherSlot = [{ index: 0, tenant: "u", cachedTokens: toks(20, 7), busy: false, lastUsed: 1 }];

  test("a saved state that spares enough is restored, the evicted cache's tenant is saved first, and only the rest is read", () => {
    const plan = planStep({ waiting: [{ id: "w", tenant: "t", promptTokens: toks(50) }], running: [], slots: otherSlot, stepTokens: 512, saved });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 0, reuseTokens: 0, source: { kind: "restore", stateId: "s1", tokens: 40 }, saveFor: "u" }]);
    assert.deepEqual(plan.prefill, [{ id: "w", tokens: 10, final: true }]);
  });

  test("another tenant's state is never restored, and without a store nothing is saved", () => {
    let plan = planStep({ waiting: [{ id: "w", tenant: "x", promptTokens: toks(50) }], running: [], slots: otherSlot, stepTokens: 512, saved });
    assert.deepEqual(plan.admit[0]?.source, { kind: "fresh" });
    plan = planStep({ waiting: [{ id: "w", tenant: "t", promptTokens: toks(50) }], running: [], slots: otherSlot, stepTokens: 512 });
    assert.deepEqual(plan.admit, [{ id: "w", slotIndex: 0, reuseTokens: 0, source: { kind: "fresh" } }]);
  });
});
