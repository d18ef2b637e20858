// TenantRegistry (src/tenants/registry.ts) over a real SqliteTenantStore:
// authentication by key hash, immediate effect of writes, change events,
// serialized writes. Also the pure auth helpers of src/middleware/auth.ts.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { isModelAllowed, presentedKey } from "../../../src/middleware/auth.js";
import { newTenant } from "../../../src/tenants/config.js";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { TenantRegistry, type TenantChange } from "../../../src/tenants/registry.js";
import { SqliteTenantStore } from "../../../src/tenants/store.js";

let dir: string;
let store: SqliteTenantStore;
let registry: TenantRegistry;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-registry-test-"));
  store = SqliteTenantStore.open(dir);
  registry = await TenantRegistry.load(store);
});
afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("TenantRegistry", () => {
  test("a created key authenticates as its tenant; anything else does not", async () => {
    await registry.createTenant(newTenant("acme", {}));
    const issued = await registry.createKey("acme", "ci");
    assert.ok(issued);
    assert.match(issued.key, /^lmx-[A-Za-z0-9]{40}$/);
    assert.equal(issued.record.prefix, `${issued.key.slice(0, 8)}…`);
    assert.equal(registry.authenticate(issued.key)?.id, "acme");
    assert.equal(registry.authenticate(`${issued.key}x`), null);
    assert.equal(registry.authenticate(""), null);
    assert.equal(registry.authenticate(issued.record.hash), null, "the hash is not a key");
    assert.equal(await registry.createKey("nobody", null), null);
  });

  test("revocation, rotation and deletion apply to the next authenticate call", async () => {
    await registry.createTenant(newTenant("acme", {}));
    const a = (await registry.createKey("acme", null))!;
    const b = (await registry.createKey("acme", null))!;
    await registry.revokeKey("acme", a.record.id);
    assert.equal(registry.authenticate(a.key), null);
    const rotated = (await registry.rotateKey("acme", b.record.id))!;
    assert.equal(registry.authenticate(b.key), null);
    assert.equal(registry.authenticate(rotated.key)?.id, "acme");
    assert.equal(await registry.rotateKey("acme", b.record.id), null, "already revoked");
    await registry.deleteTenant("acme");
    assert.equal(registry.authenticate(rotated.key), null);
    assert.equal(registry.get("acme"), null);
  });

  test("updates replace the tenant object (frozen) and notify listeners", async () => {
    const changes: TenantChange[] = [];
    const unsubscribe = registry.onChange((c) => changes.push(c));
    await registry.createTenant(newTenant("acme", { scheduling: { weight: 1 } }));
    const key = (await registry.createKey("acme", null))!.key;
    const before = registry.authenticate(key)!;
    await registry.updateTenant("acme", { scheduling: { weight: 4 }, limits: { maxTokens: 9 } });
    const after = registry.authenticate(key)!;
    assert.equal(before.scheduling.weight, 1, "the old object is unchanged");
    assert.equal(after.scheduling.weight, 4);
    assert.equal(after.limits.maxTokens, 9);
    assert.ok(Object.isFrozen(after) && Object.isFrozen(after.limits) && Object.isFrozen(after.scheduling));
    await registry.deleteTenant("acme");
    assert.deepEqual(
      changes.map((c) => (c.type === "upserted" ? `upserted ${c.tenant.id} w=${c.tenant.scheduling.weight}` : `deleted ${c.tenantId}`)),
      ["upserted acme w=1", "upserted acme w=4", "deleted acme"],
    );
    unsubscribe();
    await registry.createTenant(newTenant("beta", {}));
    assert.equal(changes.length, 3);
  });

  test("concurrent partial updates are not lost", async () => {
    await registry.createTenant(newTenant("acme", {}));
    await Promise.all([
      registry.updateTenant("acme", { limits: { requestsPerMinute: 1 } }),
      registry.updateTenant("acme", { limits: { tokensPerMinute: 2 } }),
      registry.updateTenant("acme", { scheduling: { weight: 3 } }),
    ]);
    const t = registry.get("acme")!.tenant;
    assert.deepEqual([t.limits.requestsPerMinute, t.limits.tokensPerMinute, t.scheduling.weight], [1, 2, 3]);
    assert.deepEqual((await store.getTenant("acme"))?.tenant, t);
  });

  test("a failed consistency check leaves the tenant unchanged and later writes still run", async () => {
    await registry.createTenant(newTenant("acme", {}));
    await assert.rejects(
      registry.updateTenant("acme", { scheduling: { maxSlots: 1 } }, () => {
        throw new Error("refused");
      }),
      /refused/,
    );
    assert.equal(registry.get("acme")!.tenant.scheduling.maxSlots, null);
    assert.ok(await registry.updateTenant("acme", { scheduling: { maxSlots: 2 } }));
  });

  test("a new registry on the same store sees tenants and active keys only", async () => {
    await registry.createTenant(newTenant("acme", {}));
    const live = (await registry.createKey("acme", null))!;
    const dead = (await registry.createKey("acme", null))!;
    await registry.revokeKey("acme", dead.record.id);
    const again = await TenantRegistry.load(store);
    assert.equal(again.authenticate(live.key)?.id, "acme");
    assert.equal(again.authenticate(dead.key), null);
  });

  test("importDefinitions makes file keys work at once", async () => {
    await registry.importDefinitions([{ tenant: newTenant("filed", {}), keyHashes: [hashApiKey("lmx-from-file-0123456789")] }]);
    assert.equal(registry.authenticate("lmx-from-file-0123456789")?.id, "filed");
  });
});

describe("auth helpers", () => {
  test("presentedKey reads Bearer first, then x-api-key", () => {
    assert.equal(presentedKey({ authorization: "Bearer lmx-a" }), "lmx-a");
    assert.equal(presentedKey({ authorization: "bearer   lmx-a  " }), "lmx-a");
    assert.equal(presentedKey({ "x-api-key": "lmx-b" }), "lmx-b");
    assert.equal(presentedKey({ authorization: "Bearer lmx-a", "x-api-key": "lmx-b" }), "lmx-a");
    assert.equal(presentedKey({ authorization: "Basic abc" }), null);
    assert.equal(presentedKey({ authorization: "Bearer " }), null);
    assert.equal(presentedKey({ "x-api-key": " " }), null);
    assert.equal(presentedKey({}), null);
  });

  test("isModelAllowed: null allows all; an allowed id or alias opens every name of the served model", () => {
    const served = ["stories260K", "gpt-x"];
    const t = (allowedModels: string[] | null) => newTenant("t", { limits: { allowedModels } });
    assert.equal(isModelAllowed(t(null), "stories260K", served), true);
    assert.equal(isModelAllowed(t(["stories260K"]), "gpt-x", served), true);
    assert.equal(isModelAllowed(t(["gpt-x"]), "stories260K", served), true);
    assert.equal(isModelAllowed(t(["other-model"]), "stories260K", served), false);
    assert.equal(isModelAllowed(t([]), "gpt-x", served), false);
  });
});

describe("TenantRegistry.refresh (writes another process made to the store)", () => {
  test("emits a change per tenant created, changed, deleted or re-created elsewhere, and applies keys; nothing when nothing changed", async () => {
    const other = SqliteTenantStore.open(dir);
    try {
      const elsewhere = await TenantRegistry.load(other);
      const changes: TenantChange[] = [];
      registry.onChange((c) => changes.push(c));
      await elsewhere.createTenant(newTenant("acme", {}));
      await elsewhere.createTenant(newTenant("gone", {}));
      const issued = (await elsewhere.createKey("acme", null))!;
      assert.equal(registry.authenticate(issued.key), null, "not before the refresh");
      await registry.refresh();
      assert.equal(registry.authenticate(issued.key)?.id, "acme");
      assert.deepEqual(changes.map((c) => (c.type === "deleted" ? `-${c.tenantId}` : `+${c.tenant.id}`)).sort(), ["+acme", "+gone"]);

      changes.length = 0;
      assert.deepEqual(await registry.refresh(), [], "no change, no event");

      const firstAcme = registry.get("acme")!.tenant.incarnation;
      await elsewhere.updateTenant("gone", { limits: { maxTokens: 3 } });
      await elsewhere.deleteTenant("acme");
      await elsewhere.createTenant(newTenant("acme", {}));
      await elsewhere.revokeKey("acme", issued.record.id);
      await registry.refresh();
      assert.equal(registry.authenticate(issued.key), null);
      assert.equal(registry.get("gone")?.tenant.limits.maxTokens, 3);
      assert.notEqual(registry.get("acme")?.tenant.incarnation, firstAcme);
      assert.ok(
        changes.every((c) => c.fromStore === true),
        "told as learned from the store",
      );
      assert.deepEqual(
        changes.map((c) => (c.type === "deleted" ? `-${c.tenantId}` : `+${c.tenant.id}`)),
        ["-acme", "+acme", "+gone"],
        "a re-created tenant is told as deleted (quota, KV cache and stored data go) then upserted",
      );
    } finally {
      await other.close();
    }
  });
});
