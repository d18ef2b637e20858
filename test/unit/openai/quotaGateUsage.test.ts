// QuotaGate (src/openai/runGeneration.ts) after issue 19: a request whose
// bound (by the engine's count) does not fit is refused before it runs, and a
// request cut short is charged what the engine reports it used, not its
// reservation (item 12: 2,000 charged for a dozen tokens generated).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Response } from "express";
import type { EngineRequest, Usage } from "../../../engine/index.js";
import { createMetrics } from "../../../src/metrics.js";
import { boundTokens, QuotaGate } from "../../../src/openai/runGeneration.js";
import { QuotaLedger } from "../../../src/quota/ledger.js";
import { LocalQuota } from "../../../src/quota/quota.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits } from "../../../src/tenants/types.js";

function tenant(limits: Partial<TenantLimits>): Tenant {
  return { id: "acme", limits: { ...DEFAULT_LIMITS, ...limits }, scheduling: DEFAULT_SCHEDULING };
}

function fakeResponse(): Response {
  return { set: () => undefined } as unknown as Response;
}

const usage = (promptTokens: number, completionTokens: number): Usage => ({ promptTokens, completionTokens, cachedTokens: 0 });
const req = (maxTokens: number | null, fork?: { group: string; index: number }): EngineRequest =>
  ({
    tenant: "acme",
    prompt: { kind: "text", text: "" },
    maxTokens,
    stop: [],
    echo: false,
    priority: 0,
    ...(fork ? { fork } : {}),
  }) as unknown as EngineRequest;

describe("boundTokens", () => {
  test("each prompt once per fork group, each choice's max_tokens, or the rest of the context without one", async () => {
    assert.equal(boundTokens([req(50)], [300], 512), 350);
    assert.equal(boundTokens([req(null)], [300], 512), 512);
    const group = [0, 1, 2].map((index) => req(40, { group: "g", index }));
    assert.equal(boundTokens(group, [100, 100, 100], 512), 100 + 3 * 40);
  });
});

describe("QuotaGate.confirm", () => {
  test("the engine's count replaces the estimate; a bound past the budget is a 429 and close() refunds it", async () => {
    const ledger = new QuotaLedger();
    const t = tenant({ tokensPerDay: 1000 });
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), t, fakeResponse(), () => 200);
    assert.equal(ledger.usage("acme")!.dayTokens, 200);
    await assert.rejects(gate.confirm(1200), (err: Error & { status?: number }) => err.status === 429);
    await gate.close();
    assert.equal(ledger.usage("acme")!.dayTokens, 0);
    const ok = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), t, fakeResponse(), () => 200);
    await ok.confirm(900);
    assert.equal(ledger.usage("acme")!.dayTokens, 900);
  });

  test("a tenant without token limits is not resized (nothing was estimated)", async () => {
    const ledger = new QuotaLedger();
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant({}), fakeResponse(), () => assert.fail("no estimate"));
    await gate.confirm(5000);
    assert.equal(ledger.usage("acme")!.dayTokens, 0);
  });
});

describe("QuotaGate.close after a request was cut short", () => {
  test("charges what the engine reports: the leader's prompt once, every choice's completion", async () => {
    const ledger = new QuotaLedger();
    const t = tenant({ lifetimeTokens: 100_000 });
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), t, fakeResponse(), () => 100);
    await gate.confirm(10 + 2 * 2000);
    gate.track([
      { usage: Promise.resolve(usage(10, 12)), billsPrompt: true },
      { usage: Promise.resolve(usage(10, 11)), billsPrompt: false },
    ]);
    gate.started();
    assert.equal(ledger.usage("acme")!.lifetimeTokens, 4010, "the bound is held while it runs");
    await gate.close();
    assert.equal(ledger.usage("acme")!.lifetimeTokens, 10 + 12 + 11);
  });

  test("with no report at all (the worker died), the bound it held is charged", async () => {
    const ledger = new QuotaLedger();
    const t = tenant({ lifetimeTokens: 100_000 });
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), t, fakeResponse(), () => 100);
    await gate.confirm(300);
    gate.track([{ usage: Promise.resolve(null), billsPrompt: true }]);
    gate.started();
    await gate.close();
    assert.equal(ledger.usage("acme")!.lifetimeTokens, 300);
  });

  test("without a token limit, the report is charged too (no estimate is made)", async () => {
    const ledger = new QuotaLedger();
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant({}), fakeResponse(), () => assert.fail("no estimate"));
    gate.track([{ usage: Promise.resolve(usage(10, 3)), billsPrompt: true }]);
    gate.started();
    await gate.close();
    assert.equal(ledger.usage("acme")!.lifetimeTokens, 13);
  });
});
