// QuotaLedger.resize (src/quota/ledger.ts): once the engine has counted a
// request with the served model's tokenizer, the reservation becomes that
// exact bound, or the request is refused. This is what keeps a limit from
// being beaten by a tokenizer that counts more than the pre-flight estimate
// (issue 19 item 7: digit strings on the Llama-2 vocabulary).
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { QuotaLedger, type Reservation } from "../../../src/quota/ledger.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits } from "../../../src/tenants/types.js";

const NOON = Date.UTC(2025, 0, 15, 12, 0, 0);
let nowMs = NOON;
beforeEach(() => {
  nowMs = NOON;
});
const ledger = () => new QuotaLedger({ now: () => nowMs });

function tenant(limits: Partial<TenantLimits>): Tenant {
  return { id: "acme", limits: { ...DEFAULT_LIMITS, ...limits }, scheduling: DEFAULT_SCHEDULING };
}

function admit(l: QuotaLedger, t: Tenant, estimatedTokens: number): Reservation {
  const r = l.reserve(t, { estimatedTokens });
  if (!r.ok) assert.fail(`expected admission, got ${r.error.message}`);
  return r.reservation;
}

describe("QuotaLedger.resize", () => {
  for (const limits of [{ tokensPerDay: 1000 }, { lifetimeTokens: 1000 }, { tokensPerMinute: 1000 }] satisfies Partial<TenantLimits>[]) {
    const name = Object.keys(limits)[0];
    test(`${name}: concurrent underestimates cannot all grow past the limit; the one that does not fit is refused`, () => {
      const l = ledger();
      const t = tenant(limits);
      // Three requests each estimated at 200 (cl100k), each 400 by the model's count.
      const rs = [admit(l, t, 200), admit(l, t, 200), admit(l, t, 200)];
      assert.equal(l.resize(t, rs[0]!, 400), null);
      assert.equal(l.resize(t, rs[1]!, 400), null);
      const refused = l.resize(t, rs[2]!, 400);
      assert.ok(refused instanceof ApiError && refused.status === 429, "800 + 400 > 1000");
      assert.equal(l.held(rs[2]!), 200, "a refused resize changes nothing");
      l.cancel(rs[2]!);
      // Both run to their bound: never more than the limit in all.
      l.settle(rs[0]!, 400);
      l.settle(rs[1]!, 400);
      if (name !== "tokensPerMinute") assert.equal(l.usage("acme")![name === "tokensPerDay" ? "dayTokens" : "lifetimeTokens"], 800);
      const r = l.reserve(t, { estimatedTokens: 201 });
      assert.equal(r.ok, false, "201 more would pass 1000");
    });
  }

  test("a resize down refunds at once, and settle moves the counters from what is held, not the first estimate", () => {
    const l = ledger();
    const t = tenant({ tokensPerDay: 1000 });
    const r = admit(l, t, 600);
    assert.equal(l.resize(t, r, 100), null);
    assert.equal(l.usage("acme")!.dayTokens, 100);
    l.settle(r, 90);
    assert.equal(l.usage("acme")!.dayTokens, 90);
  });

  test("cancel refunds what is held after a resize", () => {
    const l = ledger();
    const t = tenant({ lifetimeTokens: 1000 });
    const r = admit(l, t, 100);
    assert.equal(l.resize(t, r, 700), null);
    assert.equal(l.usage("acme")!.lifetimeTokens, 700);
    l.cancel(r);
    assert.equal(l.usage("acme")!.lifetimeTokens, 0);
  });

  test("a request larger than the per-minute limit by the model's count is too large, not a wait", () => {
    const l = ledger();
    const t = tenant({ tokensPerMinute: 1000 });
    const r = admit(l, t, 300);
    const err = l.resize(t, r, 1500);
    assert.ok(err instanceof ApiError);
    assert.match(err.message, /1000/);
    assert.equal(err.headers?.["x-should-retry"], "false");
  });

  test("resizing a reservation that is over does nothing", () => {
    const l = ledger();
    const t = tenant({ tokensPerDay: 1000 });
    const r = admit(l, t, 100);
    l.settle(r, 50);
    assert.equal(l.resize(t, r, 5000), null);
    assert.equal(l.usage("acme")!.dayTokens, 50);
  });
});
