// The TenantStore contract (src/tenants/store.ts), run against every
// implementation: SQLite (store.test.ts) and PostgreSQL
// (test/unit/store/postgres/tenantStore.test.ts). Tenant and key CRUD,
// incarnations, rotation, file import, reopening. What only one
// implementation has (pragmas, its own schema upgrades) stays in its own file.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { newTenant } from "../../../src/tenants/config.js";
import { hashApiKey } from "../../../src/tenants/keys.js";
import type { TenantStore } from "../../../src/tenants/store.js";
import { DEFAULT_LIMITS, engineTenant, type Tenant } from "../../../src/tenants/types.js";

export interface TenantStoreHarness {
  /** Empties the data before each test. */
  reset(): Promise<void>;
  /** A store over the data (opening it again sees what was committed before). */
  open(nowSeconds: () => number): Promise<TenantStore>;
  /** Every api_keys row as stored, to check that no key is. */
  rawKeys(): Promise<unknown[]>;
}

export const acme = newTenant("acme", { limits: { requestsPerMinute: 60, allowedModels: ["m"] }, scheduling: { weight: 2 } });
/** A stored tenant without its incarnation (a nonce the store makes; see the incarnation tests). */
export const plain = (t: Tenant | undefined) => t && { id: t.id, limits: t.limits, scheduling: t.scheduling };
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const key = (tenantId: string, secret: string, name: string | null = null) => ({
  tenantId,
  hash: hashApiKey(secret),
  prefix: `${secret.slice(0, 8)}…`,
  name,
});

export function describeTenantStoreContract(name: string, harness: TenantStoreHarness): void {
  let store: TenantStore;
  let clockSeconds = 1_700_000_000;
  const open = () => harness.open(() => clockSeconds);

  beforeEach(async () => {
    clockSeconds = 1_700_000_000;
    await harness.reset();
    store = await open();
  });
  afterEach(async () => {
    await store.close();
  });

  describe(`${name}: tenants`, () => {
    test("create, get, list; a taken id gives null", async () => {
      const created = await store.createTenant(acme);
      assert.match(created?.tenant.incarnation ?? "", UUID);
      assert.deepEqual(created, {
        tenant: { ...acme, incarnation: created?.tenant.incarnation },
        createdAtSeconds: clockSeconds,
        updatedAtSeconds: clockSeconds,
      });
      assert.equal(await store.createTenant(newTenant("acme", {})), null);
      assert.deepEqual(await store.getTenant("acme"), created);
      assert.equal(await store.getTenant("nobody"), null);
      await store.createTenant(newTenant("beta", {}));
      assert.deepEqual(
        (await store.listTenants()).map((r) => r.tenant.id),
        ["acme", "beta"],
      );
    });

    test("update replaces limits and scheduling and bumps updated_at", async () => {
      await store.createTenant(acme);
      clockSeconds += 10;
      const updated = await store.updateTenant({ ...acme, limits: { ...DEFAULT_LIMITS, maxTokens: 5 } });
      assert.equal(updated?.tenant.limits.maxTokens, 5);
      assert.equal(updated?.tenant.limits.requestsPerMinute, null);
      assert.equal(updated?.updatedAtSeconds, clockSeconds);
      assert.equal(updated?.createdAtSeconds, clockSeconds - 10);
      assert.equal(await store.updateTenant(newTenant("nobody", {})), null);
    });

    test("delete removes the tenant and its keys", async () => {
      await store.createTenant(acme);
      await store.addKey(key("acme", "lmx-secret-1"));
      assert.equal(await store.deleteTenant("acme"), true);
      assert.equal(await store.getTenant("acme"), null);
      assert.deepEqual(await store.listKeys(), []);
      assert.equal(await store.deleteTenant("acme"), false);
    });
  });

  describe(`${name}: incarnations (what the KV cache is keyed by)`, () => {
    test("a tenant deleted and created again under its id is a new incarnation, never the old one's engine name", async () => {
      const first = (await store.createTenant(acme))!.tenant;
      assert.equal(
        (await store.updateTenant({ ...acme, limits: { ...DEFAULT_LIMITS, maxTokens: 5 } }))?.tenant.incarnation,
        first.incarnation,
        "an update keeps it",
      );
      await store.deleteTenant("acme");
      const second = (await store.createTenant(acme))!.tenant;
      assert.match(second.incarnation ?? "", UUID);
      assert.notEqual(second.incarnation, first.incarnation);
      assert.notEqual(engineTenant(second), engineTenant(first));
      await store.deleteTenant("acme");
      await store.importDefinitions([{ tenant: acme, keyHashes: [] }]);
      const third = (await store.getTenant("acme"))!.tenant;
      assert.ok(![first.incarnation, second.incarnation].includes(third.incarnation), "re-created by the tenants file: new too");
    });
  });

  describe(`${name}: keys`, () => {
    beforeEach(async () => {
      await store.createTenant(acme);
    });

    test("addKey stores the hash, never the key; null for an unknown tenant", async () => {
      const rec = await store.addKey(key("acme", "lmx-secret-1", "ci"));
      assert.ok(rec);
      assert.match(rec.id, /^key_/);
      assert.equal(rec.hash, hashApiKey("lmx-secret-1"));
      assert.deepEqual(await store.listKeys("acme"), [rec]);
      const dump = JSON.stringify(await harness.rawKeys());
      assert.ok(!dump.includes("lmx-secret-1"));
      assert.equal(await store.addKey(key("nobody", "lmx-secret-2")), null);
    });

    test("revokeKey sets revoked_at once; null for a key of another tenant", async () => {
      await store.createTenant(newTenant("beta", {}));
      const rec = (await store.addKey(key("acme", "lmx-secret-1")))!;
      clockSeconds += 5;
      const revoked = await store.revokeKey("acme", rec.id);
      assert.equal(revoked?.revokedAtSeconds, clockSeconds);
      clockSeconds += 5;
      assert.equal((await store.revokeKey("acme", rec.id))?.revokedAtSeconds, clockSeconds - 5, "idempotent");
      assert.equal(await store.revokeKey("beta", rec.id), null);
      assert.equal(await store.revokeKey("acme", "key_nope"), null);
    });

    test("rotateKey revokes the old key and adds a new one with its name, atomically", async () => {
      const old = (await store.addKey(key("acme", "lmx-secret-1", "prod")))!;
      const result = await store.rotateKey("acme", old.id, { hash: hashApiKey("lmx-secret-2"), prefix: "lmx-secr…" });
      assert.ok(result);
      assert.notEqual(result.revoked.revokedAtSeconds, null);
      assert.equal(result.added.name, "prod");
      assert.equal(result.added.hash, hashApiKey("lmx-secret-2"));
      assert.equal(await store.rotateKey("acme", old.id, { hash: hashApiKey("lmx-secret-3"), prefix: "x" }), null, "a revoked key cannot be rotated");
      assert.equal((await store.listKeys("acme")).length, 2);
    });

    test("a hash that exists already makes rotation fail without revoking the old key", async () => {
      const a = (await store.addKey(key("acme", "lmx-secret-1")))!;
      await store.addKey(key("acme", "lmx-secret-2"));
      await assert.rejects(store.rotateKey("acme", a.id, { hash: hashApiKey("lmx-secret-2"), prefix: "x" }), /UNIQUE|duplicate key/);
      const [first] = await store.listKeys("acme");
      assert.equal(first?.revokedAtSeconds, null, "rolled back");
    });
  });

  describe(`${name}: importDefinitions and reopening`, () => {
    test("the file wins for its tenants, adds absent keys, keeps revoked ones revoked, moves keys between tenants", async () => {
      await store.createTenant(newTenant("admin-made", {}));
      await store.createTenant(newTenant("acme", { limits: { maxTokens: 1 } }));
      const revoked = (await store.addKey(key("acme", "lmx-revoked")))!;
      await store.revokeKey("acme", revoked.id);
      await store.addKey(key("admin-made", "lmx-moving"));

      const moves = await store.importDefinitions([
        { tenant: acme, keyHashes: [hashApiKey("lmx-revoked"), hashApiKey("lmx-new")] },
        { tenant: newTenant("beta", {}), keyHashes: [hashApiKey("lmx-moving")] },
      ]);
      assert.deepEqual(moves, [{ hash: hashApiKey("lmx-moving"), fromTenantId: "admin-made", toTenantId: "beta" }]);
      assert.deepEqual(plain((await store.getTenant("acme"))?.tenant), acme, "file wins");
      assert.ok(await store.getTenant("admin-made"), "tenants the file does not name are kept");
      const keys = await store.listKeys("acme");
      assert.deepEqual(
        keys.map((k) => [k.hash, k.revokedAtSeconds !== null, k.name]),
        [
          [hashApiKey("lmx-revoked"), true, null],
          [hashApiKey("lmx-new"), false, "tenants file"],
        ],
      );
      assert.match(keys[1]!.prefix, /^sha256:[0-9a-f]{8}…$/);
      assert.equal((await store.listKeys("beta"))[0]?.hash, hashApiKey("lmx-moving"));
    });

    test("importing the same file twice changes nothing (updated_at included)", async () => {
      const defs = [{ tenant: acme, keyHashes: [hashApiKey("lmx-a")] }];
      await store.importDefinitions(defs);
      const before = await store.getTenant("acme");
      clockSeconds += 100;
      await store.importDefinitions(defs);
      assert.deepEqual(await store.getTenant("acme"), before);
      assert.equal((await store.listKeys()).length, 1);
    });

    test("everything survives closing and reopening the file", async () => {
      await store.createTenant(acme);
      const k = (await store.addKey(key("acme", "lmx-secret-1", "n")))!;
      await store.revokeKey("acme", k.id);
      const incarnation = (await store.getTenant("acme"))?.tenant.incarnation;
      await store.close();
      store = await open();
      assert.deepEqual((await store.getTenant("acme"))?.tenant, { ...acme, incarnation });
      assert.notEqual((await store.listKeys("acme"))[0]?.revokedAtSeconds, null);
    });
  });
}
