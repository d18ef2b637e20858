// The audit log's pure parts: canonical form, the chain, the refusal windows,
// GET /admin/audit's query parsing and the details of a tenant update.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tenantChange } from "../../../src/audit/adminEvents.js";
import { parseAuditQuery } from "../../../src/audit/query.js";
import { ChainVerifier, GENESIS_HASH, canonicalJson, nextRecord, seqOfAuditId, type AuditRecord } from "../../../src/audit/record.js";
import { RefusalWindow, SUMMARY_TOP_ADDRESSES } from "../../../src/audit/refusals.js";
import { ApiError } from "../../../src/errors.js";
import { newTenant } from "../../../src/tenants/config.js";
import { entry } from "./auditStoreContract.js";

describe("audit record chain", () => {
  test("canonical JSON sorts keys at every depth, so key order never changes a hash", () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: null }], c: "é" } }), '{"a":{"c":"é","d":[2,{"x":null,"y":1}]},"b":1}');
    const a = nextRecord(null, entry(1, { details: { x: 1, y: 2 } }));
    const b = nextRecord(null, entry(1, { details: { y: 2, x: 1 } }));
    assert.equal(a.hash, b.hash);
    assert.throws(() => canonicalJson({ n: Number.NaN }), /non-finite/);
  });

  test("each record names the previous one's hash; verify stops at the first bad record", () => {
    const chain: AuditRecord[] = [];
    for (let i = 1; i <= 5; i++) chain.push(nextRecord(chain.at(-1) ?? null, entry(i)));
    assert.equal(chain[0]!.prevHash, GENESIS_HASH);
    const ok = new ChainVerifier();
    assert.equal(ok.check(chain.slice(0, 2)) && ok.check(chain.slice(2)), true, "state carries across batches");
    assert.equal(ok.count, 5);
    assert.equal(ok.headHash, chain[4]!.hash);

    const verify = (records: AuditRecord[]) => {
      const v = new ChainVerifier();
      v.check(records);
      return v.problem;
    };
    const changed = chain.map((r) => (r.seq === 3 ? { ...r, requestId: "req_other" } : r));
    assert.deepEqual(verify(changed)?.id, "audit_log-3");
    assert.match(verify([chain[0]!, chain[2]!])!.reason, /missing/);
    assert.equal(verify([chain[1]!, chain[0]!])?.seq, 2, "reordered");
    // A record rewritten with a fresh hash breaks the link of the one after it.
    const forged = nextRecord(chain[1]!, entry(99));
    const forgedChain = [chain[0]!, chain[1]!, forged, chain[3]!, chain[4]!];
    assert.equal(verify(forgedChain)?.seq, 4);
  });

  test("ids are audit_log-<seq>; anything else is not one", () => {
    assert.equal(seqOfAuditId("audit_log-42"), 42);
    for (const bad of ["audit_log-0", "audit_log-01", "audit_log-x", "42", "audit_log-99999999999999999"]) assert.equal(seqOfAuditId(bad), null, bad);
  });
});

describe("refused authentications: windows", () => {
  const limits = { perAddress: 3, total: 5, windowMs: 1000 };

  test("a flood from one address: a bounded number recorded, the rest summed exactly in the summary", () => {
    const w = new RefusalWindow(limits, 0);
    let recorded = 0;
    for (let i = 0; i < 10_000; i++) if (w.admit("10.0.0.1")) recorded++;
    assert.equal(recorded, 3);
    assert.equal(w.roll(999), null, "the window is not over");
    const s = w.roll(1000)!;
    assert.deepEqual(s, {
      windowStartMs: 0,
      windowEndMs: 1000,
      recorded: 3,
      suppressed: 9997,
      topAddresses: [{ ipAddress: "10.0.0.1", suppressed: 9997 }],
      otherSuppressed: 0,
    });
    assert.equal(w.admit("10.0.0.1"), true, "the next window starts over");
  });

  test("many addresses: the total bounds them all; the summary names the worst and sums the rest", () => {
    const w = new RefusalWindow(limits, 0);
    let recorded = 0;
    let attempts = 0;
    for (let a = 0; a < 50; a++) {
      for (let i = 0; i <= a; i++) {
        attempts++;
        if (w.admit(`10.0.${a}.1`)) recorded++;
      }
    }
    assert.equal(recorded, 5);
    const s = w.roll(5000)!;
    assert.equal(s.recorded + s.suppressed, attempts);
    assert.equal(s.topAddresses.length, SUMMARY_TOP_ADDRESSES);
    assert.equal(s.topAddresses[0]!.ipAddress, "10.0.49.1");
    assert.equal(s.topAddresses.reduce((n, x) => n + x.suppressed, 0) + s.otherSuppressed, s.suppressed);
    assert.equal(w.roll(5500), null, "an idle window after a skipped stretch has nothing to say");
  });

  test("a window that suppressed nothing writes no summary; force ends it at once (shutdown)", () => {
    const w = new RefusalWindow(limits, 0);
    w.admit("a");
    assert.equal(w.roll(2000), null);
    for (let i = 0; i < 4; i++) w.admit("a");
    assert.equal(w.roll(2100, true)!.suppressed, 1);
  });
});

describe("GET /admin/audit query", () => {
  const problem = (search: string) => {
    try {
      parseAuditQuery(search);
    } catch (err) {
      assert.ok(err instanceof ApiError);
      return err.param;
    }
    return "accepted";
  };

  test("OpenAI's filters and cursors, with or without []", () => {
    const q = parseAuditQuery(
      "effective_at%5Bgte%5D=10&effective_at[lt]=20&event_types[]=tenant.created&event_types=api_key.revoked&actor_ids[]=admin_key-1&resource_ids=t1&limit=5&after=audit_log-9",
    );
    assert.deepEqual(q, {
      effectiveAt: { gte: 10, lt: 20 },
      types: ["tenant.created", "api_key.revoked"],
      actorIds: ["admin_key-1"],
      resourceIds: ["t1"],
      limit: 5,
      afterSeq: 9,
      beforeSeq: null,
    });
    assert.deepEqual(parseAuditQuery(""), { effectiveAt: {}, types: [], actorIds: [], resourceIds: [], limit: 20, afterSeq: null, beforeSeq: null });
  });

  test("each bad filter is a 400 naming its parameter", () => {
    assert.equal(problem("limit=0"), "limit");
    assert.equal(problem("limit=101"), "limit");
    assert.equal(problem("limit=ten"), "limit");
    assert.equal(problem("effective_at[gt]=-1"), "effective_at[gt]");
    assert.equal(problem("effective_at[lte]=1.5"), "effective_at[lte]");
    assert.equal(problem("effective_at[between]=1"), "effective_at[between]");
    assert.equal(problem("event_types[]=tenant.exploded"), "event_types[]");
    assert.equal(problem("after=abc"), "after");
    assert.equal(problem("before=audit_log-0"), "before");
    assert.equal(problem("after=audit_log-3&before=audit_log-1"), "before");
    assert.equal(problem("limit=1&limit=2"), "limit");
    assert.equal(problem("actor_emails[]=a@b.c"), "actor_emails[]");
    assert.equal(problem("project_ids=p"), "project_ids[]");
    assert.equal(problem("resource_ids[]="), "resource_ids[]");
    assert.equal(problem("colour=blue"), "colour");
  });
});

describe("tenant update details", () => {
  test("only the fields that changed, before and after, and the patch as sent", () => {
    const before = { tenant: newTenant("t", { limits: { maxTokens: 10 } }), createdAtSeconds: 1, updatedAtSeconds: 1 };
    const after = {
      tenant: newTenant("t", { limits: { maxTokens: 20, requestsPerMinute: 5 }, scheduling: { weight: 1 } }),
      createdAtSeconds: 1,
      updatedAtSeconds: 2,
    };
    const change = tenantChange(before, after, { limits: { maxTokens: 20, requestsPerMinute: 5 } });
    assert.deepEqual(change, {
      changes_requested: { limits: { maxTokens: 20, requestsPerMinute: 5 } },
      before: { limits: { maxTokens: 10, requestsPerMinute: null } },
      after: { limits: { maxTokens: 20, requestsPerMinute: 5 } },
    });
  });
});
