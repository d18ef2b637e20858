// The per-request sampling budget (engine/sampleBudget.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chargeSampling, SlowGrammars, slowSamplingError, type SampleBudget, type SampledJob } from "../../../engine/sampleBudget.js";
import type { GrammarSpec } from "../../../engine/protocol.js";

const budget: SampleBudget = { stepMs: 250, freeMs: 50, excessMs: 1000, refuseForMs: 60_000 };
const job = (): SampledJob => ({ sampleExcessMs: 0, slowSampling: null });
const schema: GrammarSpec = { kind: "json_schema", schema: { type: "object" } };

describe("chargeSampling", () => {
  test("one token over stepMs marks the job at once", () => {
    const j = job();
    chargeSampling(j, 20, budget);
    assert.equal(j.slowSampling, null);
    chargeSampling(j, 251, budget);
    assert.deepEqual(j.slowSampling, { maxMs: 251, excessMs: 201 });
  });

  test("tokens each under stepMs add up their time beyond freeMs until excessMs", () => {
    const j = job();
    for (let i = 0; i < 5; i++) chargeSampling(j, 249, budget); // 199 beyond each: 995
    assert.equal(j.slowSampling, null);
    chargeSampling(j, 60, budget);
    assert.equal((j as SampledJob).slowSampling?.excessMs, 1005);
  });

  test("sampling within freeMs never accrues", () => {
    const j = job();
    for (let i = 0; i < 10_000; i++) chargeSampling(j, 50, budget);
    assert.equal(j.sampleExcessMs, 0);
  });
});

describe("SlowGrammars", () => {
  test("refuses the same grammar until its time is up, naming the parameter it came from", () => {
    const slow = new SlowGrammars(60_000);
    assert.equal(slow.check(schema, "a", 0), null);
    slow.add(schema, "a", 0);
    assert.equal(slow.check({ ...schema }, "b", 1000)?.param, "response_format");
    assert.equal(slow.check({ kind: "json" }, "a", 1000), null, "one slow grammar does not condemn its tenant");
    assert.equal(slow.check(schema, "b", 60_000), null);
  });

  test("is bounded", () => {
    const slow = new SlowGrammars(60_000, 2);
    for (let i = 0; i < 3; i++) slow.add({ kind: "json_schema", schema: { i } }, `t${i}`, 0);
    assert.equal(slow.check({ kind: "json_schema", schema: { i: 0 } }, "x", 1), null);
    assert.notEqual(slow.check({ kind: "json_schema", schema: { i: 2 } }, "x", 1), null);
  });

  test("a tenant whose grammars were slow twice within a minute has every grammar refused for a minute; others are not", () => {
    const slow = new SlowGrammars(600_000);
    const fresh = (i: number): GrammarSpec => ({ kind: "json_schema", schema: { i } });
    slow.add(fresh(1), "attacker", 0);
    slow.add(fresh(2), "attacker", 30_000);
    assert.match(slow.check(fresh(3), "attacker", 30_001)?.message ?? "", /2 times within a minute/);
    assert.equal(slow.check(fresh(3), "victim", 30_001), null);
    assert.equal(slow.check(fresh(3), "attacker", 90_000), null);
  });

  test("the anonymous tenant of a server without tenants is never refused as a whole; its slow schemas still are", () => {
    const slow = new SlowGrammars(600_000);
    const fresh = (i: number): GrammarSpec => ({ kind: "json_schema", schema: { i } });
    slow.add(fresh(1), "default", 0);
    slow.add(fresh(2), "default", 1000);
    assert.equal(slow.check(fresh(3), "default", 2000), null);
    assert.notEqual(slow.check(fresh(2), "default", 2000), null);
  });

  test("tool-call grammars name tool_choice", () => {
    const wrapped: GrammarSpec = { ...schema, wrap: { prefix: "<tool_call>", suffix: "</tool_call>", repeat: false, separator: "" } };
    assert.equal(slowSamplingError(wrapped, { maxMs: 300, excessMs: 250 }, budget).param, "tool_choice");
  });
});
