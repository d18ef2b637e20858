// Daily and lifetime usage survive a restart (src/quota/usageStore.ts): a new
// ledger over the same SQLite file sees what the old one settled.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import { QuotaLedger } from "../../../src/quota/ledger.js";
import { MemoryUsageStore, SqliteUsageStore } from "../../../src/quota/usageStore.js";
import { describeUsageStoreContract } from "./usageStoreContract.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant } from "../../../src/tenants/types.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-usage-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const acme: Tenant = {
  id: "acme",
  limits: { ...DEFAULT_LIMITS, tokensPerDay: 1000, lifetimeTokens: 5000 },
  scheduling: DEFAULT_SCHEDULING,
};

describe("SqliteUsageStore", () => {
  test("a new ledger on the same file still sees the day's and the lifetime usage", async () => {
    const file = path.join(dir, "restart.db");
    let nowMs = Date.UTC(2025, 2, 1, 9, 0, 0);
    const now = () => nowMs;

    const db1 = new Database(file);
    const ledger1 = await QuotaLedger.open({ now, store: new SqliteUsageStore(db1) });
    const a = ledger1.reserve(acme, { estimatedTokens: 300 });
    const b = ledger1.reserve(acme, { estimatedTokens: 100 });
    const unsettled = ledger1.reserve(acme, { estimatedTokens: 200 });
    assert.ok(a.ok && b.ok && unsettled.ok);
    ledger1.settle(a.reservation, 250);
    ledger1.settle(b.reservation, 100);
    db1.close(); // the process dies with `unsettled` in flight: it was never acknowledged

    const db2 = new Database(file);
    const ledger2 = await QuotaLedger.open({ now, store: new SqliteUsageStore(db2) });
    assert.deepEqual(ledger2.usage("acme"), { day: "2025-03-01", dayTokens: 350, lifetimeTokens: 350, running: 0, queued: 0 });
    const over = ledger2.reserve(acme, { estimatedTokens: 651 });
    assert.equal(over.ok ? "admitted" : over.error.code, "insufficient_quota");
    const fits = ledger2.reserve(acme, { estimatedTokens: 650 });
    assert.ok(fits.ok);
    ledger2.settle(fits.reservation, 650);
    db2.close();

    nowMs += 86_400_000;
    const db3 = new Database(file);
    const ledger3 = await QuotaLedger.open({ now, store: new SqliteUsageStore(db3) });
    assert.deepEqual(ledger3.usage("acme"), { day: "2025-03-02", dayTokens: 0, lifetimeTokens: 1000, running: 0, queued: 0 });
    db3.close();
  });

  test("creates its table idempotently and sums rows per day", () => {
    const db = new Database(path.join(dir, "table.db"));
    new SqliteUsageStore(db);
    const store = new SqliteUsageStore(db);
    const columns = db.prepare("SELECT name FROM pragma_table_info('usage') ORDER BY cid").all() as { name: string }[];
    assert.deepEqual(
      columns.map((c) => c.name),
      ["tenant_id", "day", "tokens"],
    );
    db.close();
    assert.ok(store);
  });
});

describeUsageStoreContract("MemoryUsageStore", async () => ({ store: new MemoryUsageStore(), close: async () => {} }));
describeUsageStoreContract("SqliteUsageStore", async () => {
  const db = new Database(":memory:");
  return { store: new SqliteUsageStore(db), close: async () => void db.close() };
});
