// PgTenantStore (src/store/postgres/tenantStore.ts) against a real PostgreSQL:
// the TenantStore contract (test/unit/tenants/tenantStoreContract.ts), and what
// a store shared by replicas adds: the change counter that tells the others,
// and replicas importing the same tenants file at once.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { newTenant } from "../../../../src/tenants/config.js";
import { hashApiKey } from "../../../../src/tenants/keys.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { PgTenantStore } from "../../../../src/store/postgres/tenantStore.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { acme, describeTenantStoreContract, key } from "../../tenants/tenantStoreContract.js";

describe("PostgreSQL tenant store", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let db: PgDatabase;
  before(async () => {
    server = await startPostgres();
    db = new PgDatabase({ url: await server.createDatabase(), poolSize: 4 });
    await migrate(db);
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });
  const reset = async () => void (await db.execute("TRUNCATE tenants, api_keys CASCADE"));

  describeTenantStoreContract("PgTenantStore", {
    reset,
    open: async (nowSeconds) => new PgTenantStore(db, { nowSeconds }),
    rawKeys: () => db.query("SELECT * FROM api_keys"),
  });

  describe("PgTenantStore: what replicas sharing it rely on", () => {
    test("every committed tenant or key write moves the change counter; reads, no-ops and failed writes do not", async () => {
      await reset();
      const store = new PgTenantStore(db);
      const moved = async (what: string, write: () => Promise<unknown>, expected = true) => {
        const before = await store.changeVersion();
        await write().catch(() => undefined);
        assert.equal((await store.changeVersion()) !== before, expected, what);
      };
      await moved("create", () => store.createTenant(acme));
      await moved("create of a taken id", () => store.createTenant(acme), false);
      await moved("update", () => store.updateTenant({ ...acme, limits: { ...acme.limits, maxTokens: 5 } }));
      const k = (await store.addKey(key("acme", "lmx-secret-1")))!;
      await moved("add key", () => store.addKey(key("acme", "lmx-secret-2")));
      await moved("add key of an unknown tenant", () => store.addKey(key("nobody", "lmx-secret-3")), false);
      await moved("rotate", async () => {
        const rotated = await store.rotateKey("acme", k.id, { hash: hashApiKey("lmx-secret-4"), prefix: "x" });
        await moved("revoke of a revoked key", () => store.revokeKey("acme", k.id), false);
        await moved("revoke", () => store.revokeKey("acme", rotated!.added.id));
      });
      await moved("rotation of an unknown key", () => store.rotateKey("acme", "key_nope", { hash: hashApiKey("lmx-secret-5"), prefix: "x" }), false);
      await moved("reads", () => Promise.all([store.listTenants(), store.listKeys(), store.getTenant("acme")]), false);
      const file = [{ tenant: newTenant("beta", {}), keyHashes: [hashApiKey("lmx-b")] }];
      await moved("import", () => store.importDefinitions(file));
      await moved("the same import again", () => store.importDefinitions(file), false);
      await moved("delete", () => store.deleteTenant("acme"));
      await moved("delete of a missing tenant", () => store.deleteTenant("acme"), false);
    });

    test("three replicas importing the same tenants file at once end with one copy of everything", async () => {
      await reset();
      const file = [
        { tenant: acme, keyHashes: [hashApiKey("lmx-a1"), hashApiKey("lmx-a2")] },
        { tenant: newTenant("beta", {}), keyHashes: [hashApiKey("lmx-b")] },
      ];
      const replicas = [0, 1, 2].map(() => new PgTenantStore(db));
      const moves = await Promise.all(replicas.map((r) => r.importDefinitions(file)));
      assert.deepEqual(moves, [[], [], []]);
      const store = replicas[0]!;
      assert.deepEqual(
        (await store.listTenants()).map((r) => r.tenant.id),
        ["acme", "beta"],
      );
      assert.deepEqual(
        (await store.listKeys()).map((k) => [k.tenantId, k.hash]).sort(),
        [
          ["acme", hashApiKey("lmx-a1")],
          ["acme", hashApiKey("lmx-a2")],
          ["beta", hashApiKey("lmx-b")],
        ].sort(),
      );
    });
  });
});
