import assert from "node:assert/strict";
import { test } from "node:test";
import type { UsageStore } from "../../../src/quota/usageStore.js";

// The contract every usage store keeps (memory, SQLite, PostgreSQL): rows per
// tenant and day; load() and usageOf() give the latest day and the lifetime sum.
export function describeUsageStoreContract(name: string, open: () => Promise<{ store: UsageStore; close: () => Promise<void> }>): void {
  test(`${name}: load() and usageOf() give each tenant's latest day and lifetime total`, async () => {
    const { store, close } = await open();
    try {
      assert.equal((await store.load()).size, 0);
      assert.equal(await store.usageOf("acme"), null);
      await store.add("acme", "2025-01-01", 100);
      await store.add("acme", "2025-01-02", 30);
      await store.add("acme", "2025-01-02", 20);
      await store.add("acme", "2024-12-31", 5); // a late settle for an earlier day
      await store.add("beta", "2025-01-01", 7);
      await store.add("zero", "2025-01-01", 0);
      const expected = {
        acme: { day: "2025-01-02", dayTokens: 50, lifetimeTokens: 155 },
        beta: { day: "2025-01-01", dayTokens: 7, lifetimeTokens: 7 },
      };
      assert.deepEqual(Object.fromEntries(await store.load()), expected);
      assert.deepEqual(await store.usageOf("acme"), expected.acme);
      assert.deepEqual(await store.usageOf("beta"), expected.beta);
      assert.equal(await store.usageOf("zero"), null, "an add of 0 stores nothing");
    } finally {
      await close();
    }
  });
}
