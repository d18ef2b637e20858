// What every AuditStore must do (SQLite and PostgreSQL run the same tests):
// a gapless chain that verifies, filters and paging in both directions, and
// UPDATE and DELETE refused by the database itself.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AuditQuery, AuditStore } from "../../../src/audit/auditStore.js";
import { verifyAuditStore } from "../../../src/audit/verifyCli.js";
import type { AuditEntry } from "../../../src/audit/record.js";

export interface AuditStoreHarness {
  /** A store over an empty audit log. */
  fresh(): Promise<AuditStore>;
  /** Runs raw SQL as the application would (triggers in force). */
  exec(sql: string): Promise<unknown>;
  /** Changes a stored row as a database owner can, bypassing the triggers. */
  tamper(sql: string): Promise<void>;
}

export const query = (q: Partial<AuditQuery> = {}): AuditQuery => ({
  effectiveAt: {},
  types: [],
  actorIds: [],
  resourceIds: [],
  limit: 20,
  afterSeq: null,
  beforeSeq: null,
  ...q,
});

export function entry(i: number, over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    type: i % 2 === 0 ? "tenant.created" : "api_key.created",
    effectiveAtMs: 1_700_000_000_000 + i * 1000,
    actor: { type: "admin_key", id: i % 3 === 0 ? "admin_key-aaaa" : "admin_key-bbbb", ipAddress: "127.0.0.1" },
    resourceId: `r${i % 4}`,
    requestId: `req_${i}`,
    details: { n: i, nested: { z: 1, a: [1, "two", null, { y: true }] } },
    ...over,
  };
}

export function describeAuditStoreContract(name: string, h: AuditStoreHarness): void {
  describe(`${name}: the AuditStore contract`, () => {
    test("appends form a gapless chain that reads back exactly and verifies", async () => {
      const store = await h.fresh();
      const written = [];
      for (let i = 1; i <= 5; i++) written.push(await store.append(entry(i)));
      assert.deepEqual(
        written.map((r) => r.seq),
        [1, 2, 3, 4, 5],
      );
      assert.equal(written[1]!.prevHash, written[0]!.hash);
      assert.deepEqual(await store.scan(0, 100), written);
      assert.deepEqual((await verifyAuditStore(store)).ok, true);
      await store.close();
    });

    test("filters: time range in seconds, types, actors, resources; newest first", async () => {
      const store = await h.fresh();
      for (let i = 1; i <= 12; i++) await store.append(entry(i));
      const seqs = async (q: Partial<AuditQuery>) => (await store.list(query(q))).records.map((r) => r.seq);
      assert.deepEqual(await seqs({}), [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
      const t = (i: number) => 1_700_000_000 + i;
      assert.deepEqual(await seqs({ effectiveAt: { gt: t(3), lte: t(6) } }), [6, 5, 4]);
      assert.deepEqual(await seqs({ effectiveAt: { gte: t(3), lt: t(6) } }), [5, 4, 3]);
      assert.deepEqual(await seqs({ types: ["tenant.created"] }), [12, 10, 8, 6, 4, 2]);
      assert.deepEqual(await seqs({ actorIds: ["admin_key-aaaa"] }), [12, 9, 6, 3]);
      assert.deepEqual(await seqs({ resourceIds: ["r1", "r2"] }), [10, 9, 6, 5, 2, 1]);
      assert.deepEqual(await seqs({ types: ["api_key.created"], resourceIds: ["r1"] }), [9, 5, 1]);
      assert.deepEqual(await seqs({ types: ["authentication.failed"] }), []);
      await store.close();
    });

    test("paging: after walks to older records, before back to newer, has_more says whether more lie that way", async () => {
      const store = await h.fresh();
      for (let i = 1; i <= 7; i++) await store.append(entry(i));
      const p1 = await store.list(query({ limit: 3 }));
      assert.deepEqual([p1.records.map((r) => r.seq), p1.hasMore], [[7, 6, 5], true]);
      const p2 = await store.list(query({ limit: 3, afterSeq: 5 }));
      assert.deepEqual([p2.records.map((r) => r.seq), p2.hasMore], [[4, 3, 2], true]);
      const p3 = await store.list(query({ limit: 3, afterSeq: 2 }));
      assert.deepEqual([p3.records.map((r) => r.seq), p3.hasMore], [[1], false]);
      const back = await store.list(query({ limit: 3, beforeSeq: 2 }));
      assert.deepEqual([back.records.map((r) => r.seq), back.hasMore], [[5, 4, 3], true]);
      const top = await store.list(query({ limit: 3, beforeSeq: 5 }));
      assert.deepEqual([top.records.map((r) => r.seq), top.hasMore], [[7, 6], false]);
      await store.close();
    });

    test("UPDATE and DELETE are refused by the database", async () => {
      const store = await h.fresh();
      await store.append(entry(1));
      await assert.rejects(h.exec("UPDATE audit_log SET resource_id = 'x' WHERE seq = 1"), /append-only/);
      await assert.rejects(h.exec("DELETE FROM audit_log WHERE seq = 1"), /append-only/);
      assert.equal((await store.scan(0, 10))[0]!.resourceId, "r1");
      await store.close();
    });

    test("a changed, a rehashed and a removed record are each named by verify", async () => {
      const cases: Array<[string, string, RegExp]> = [
        [
          "changed details",
          "UPDATE audit_log SET details = replace(details, '\"n\":3', '\"n\":30') WHERE seq = 3",
          /audit_log-3 .*changed after it was written/,
        ],
        ["changed actor", "UPDATE audit_log SET ip_address = '10.9.9.9' WHERE seq = 2", /audit_log-2 /],
        ["rehashed record", "UPDATE audit_log SET details = '{}', hash = 'f' || substr(hash, 2) WHERE seq = 4", /audit_log-4 /],
        ["removed record", "DELETE FROM audit_log WHERE seq = 2", /expected record audit_log-2 here, found audit_log-3/],
      ];
      for (const [what, sql, expected] of cases) {
        const store = await h.fresh();
        for (let i = 1; i <= 6; i++) await store.append(entry(i));
        assert.equal((await verifyAuditStore(store)).ok, true, `${what}: intact before`);
        await h.tamper(sql);
        const outcome = await verifyAuditStore(store);
        assert.equal(outcome.ok, false, what);
        assert.match(outcome.message, expected, what);
        await store.close();
      }
    });
  });
}
