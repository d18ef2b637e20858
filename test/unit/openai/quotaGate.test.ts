// QuotaGate (src/openai/runGeneration.ts): the pre-flight token estimate is
// computed only when a number is needed, because computing it loads a
// tokenizer of about 60 MiB that a server without token limits never uses.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Response } from "express";
import { createMetrics } from "../../../src/metrics.js";
import { QuotaGate } from "../../../src/openai/runGeneration.js";
import { QuotaLedger } from "../../../src/quota/ledger.js";
import { LocalQuota } from "../../../src/quota/quota.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits } from "../../../src/tenants/types.js";

function tenant(limits: Partial<TenantLimits>): Tenant {
  return { id: "acme", limits: { ...DEFAULT_LIMITS, ...limits }, scheduling: DEFAULT_SCHEDULING };
}

/** The one Response method the gate uses: it sets the rate-limit headers. */
function fakeResponse(): Response & { headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  return { headers, set: (h: Record<string, string>) => Object.assign(headers, h) } as unknown as Response & { headers: Record<string, string> };
}

function countingEstimate(tokens: number): { estimate: () => number; calls: () => number } {
  let calls = 0;
  return { estimate: () => (calls++, tokens), calls: () => calls };
}

describe("QuotaGate's token estimate", () => {
  test("a tenant without token limits is admitted without estimating; exact usage is charged", async () => {
    const ledger = new QuotaLedger();
    const e = countingEstimate(500);
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant({ requestsPerMinute: 10 }), fakeResponse(), e.estimate);
    assert.equal(e.calls(), 0);
    assert.equal(ledger.usage("acme")?.dayTokens, 0, "nothing reserved in flight");
    gate.started();
    gate.settle({ promptTokens: 30, completionTokens: 12, cachedTokens: 0 });
    await gate.close();
    assert.equal(e.calls(), 0, "exact usage needs no estimate");
    assert.equal(ledger.usage("acme")?.dayTokens, 42);
  });

  test("without token limits, a request that ran but ended without usage is charged the estimate", async () => {
    const ledger = new QuotaLedger();
    const e = countingEstimate(500);
    const gate = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant({}), fakeResponse(), e.estimate);
    gate.started();
    await gate.close(); // client left, or the worker died: no exact count
    assert.equal(e.calls(), 1);
    assert.equal(ledger.usage("acme")?.lifetimeTokens, 500);
  });

  test("without token limits, a request that never ran costs nothing and is never estimated", async () => {
    const ledger = new QuotaLedger();
    const e = countingEstimate(500);
    await (await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant({}), fakeResponse(), e.estimate)).close();
    assert.equal(e.calls(), 0);
    assert.equal(ledger.usage("acme")?.lifetimeTokens, 0);
  });

  for (const limit of [{ tokensPerMinute: 1000 }, { tokensPerDay: 1000 }, { lifetimeTokens: 1000 }] satisfies Partial<TenantLimits>[]) {
    test(`a token limit (${Object.keys(limit)[0]}) is checked against the estimate, computed once`, async () => {
      const ledger = new QuotaLedger();
      const e = countingEstimate(600);
      const first = await QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant(limit), fakeResponse(), e.estimate);
      assert.equal(e.calls(), 1);
      assert.equal(ledger.usage("acme")?.dayTokens, 600, "reserved while in flight");
      first.started();
      await first.close();
      assert.equal(e.calls(), 1, "the charge on close reuses the estimate");
      const second = countingEstimate(600);
      await assert.rejects(
        QuotaGate.open(new LocalQuota(ledger), null, createMetrics(), tenant(limit), fakeResponse(), second.estimate),
        (err: Error & { status?: number }) => err.status === 429,
      );
    });
  }
});
