import assert from "node:assert/strict";
import { test } from "node:test";
import type { StoredUsage, UsageStore } from "../../../src/quota/usageStore.js";

// The contract every usage store keeps, through the asynchronous shape the
// PostgreSQL store has (the synchronous ones are wrapped): rows per tenant and
// day, load() gives the latest day and the lifetime sum.
export interface AsyncUsage {
  load(): Promise<Map<string, StoredUsage>>;
  add(tenantId: string, day: string, tokens: number): Promise<void>;
}
export const wrapSync = (store: UsageStore): AsyncUsage => ({ load: async () => store.load(), add: async (t, d, n) => store.add(t, d, n) });

export function describeUsageStoreContract(name: string, open: () => Promise<{ store: AsyncUsage; close: () => Promise<void> }>): void {
  test(`${name}: load() gives each tenant's latest day and lifetime total`, async () => {
    const { store, close } = await open();
    try {
      assert.equal((await store.load()).size, 0);
      await store.add("acme", "2025-01-01", 100);
      await store.add("acme", "2025-01-02", 30);
      await store.add("acme", "2025-01-02", 20);
      await store.add("acme", "2024-12-31", 5); // a late settle for an earlier day
      await store.add("beta", "2025-01-01", 7);
      await store.add("zero", "2025-01-01", 0);
      assert.deepEqual(Object.fromEntries(await store.load()), {
        acme: { day: "2025-01-02", dayTokens: 50, lifetimeTokens: 155 },
        beta: { day: "2025-01-01", dayTokens: 7, lifetimeTokens: 7 },
      });
    } finally {
      await close();
    }
  });
}

