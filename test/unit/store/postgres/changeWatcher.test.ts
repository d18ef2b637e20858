// Two replicas' registries over one PostgreSQL (src/store/postgres/changeWatcher.ts,
// TenantRegistry.refresh): what one changes through its registry, the other
// applies within a second, with the usual change events; while the database
// is down the other keeps authenticating from memory, and follows again after.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { newTenant } from "../../../../src/tenants/config.js";
import { TenantRegistry, type TenantChange } from "../../../../src/tenants/registry.js";
import { watchTenantChanges, type ChangeWatcher } from "../../../../src/store/postgres/changeWatcher.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { PgTenantStore } from "../../../../src/store/postgres/tenantStore.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";

const BOUND_MS = 1000;

/** Polls `cond` until it holds; returns how long that took, failing past BOUND_MS. */
async function within(cond: () => boolean, what: string): Promise<number> {
  const started = Date.now();
  while (!cond()) {
    assert.ok(Date.now() - started < BOUND_MS, `${what}: not within ${BOUND_MS} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

/** For what has no bound of its own: fails only if it never happens. */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `never: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("tenant changes across replicas", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let url: string;
  const dbs: PgDatabase[] = [];
  const watchers: ChangeWatcher[] = [];
  const errors: string[] = [];
  let recovered = 0;

  async function replica(): Promise<{ registry: TenantRegistry; changes: TenantChange[] }> {
    const db = new PgDatabase({ url, poolSize: 2, connectTimeoutMs: 500 });
    dbs.push(db);
    await migrate(db);
    const store = new PgTenantStore(db);
    const startVersion = await store.changeVersion();
    const registry = await TenantRegistry.load(store);
    const changes: TenantChange[] = [];
    registry.onChange((c) => changes.push(c));
    watchers.push(
      watchTenantChanges({
        feed: store,
        refresh: () => registry.refresh(),
        intervalMs: 50,
        startVersion,
        onError: (err) => errors.push((err as Error).message),
        onRecovered: () => recovered++,
      }),
    );
    return { registry, changes };
  }

  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
  });
  after(async () => {
    for (const w of watchers.reverse()) await w.stop();
    for (const db of dbs.reverse()) await db.close();
    await server?.destroy();
  });

  test("a tenant, a key, a limit, a rotation, a revocation and a deletion made on one replica apply on the other within a second", async () => {
    const one = await replica();
    const two = await replica();
    await one.registry.createTenant(newTenant("acme", { limits: { requestsPerMinute: 10 } }));
    const issued = (await one.registry.createKey("acme", "ci"))!;
    await within(() => two.registry.authenticate(issued.key)?.id === "acme", "the new key works on replica two");
    assert.deepEqual(
      two.changes.map((c) => c.type),
      ["upserted"],
    );
    assert.deepEqual(
      one.changes.map((c) => c.type),
      ["upserted"],
      "replica one's own write is not told twice",
    );

    await one.registry.updateTenant("acme", { limits: { requestsPerMinute: 99 } });
    await within(() => two.registry.get("acme")?.tenant.limits.requestsPerMinute === 99, "the limit change");
    assert.equal(two.changes.at(-1)?.type, "upserted");

    const rotated = (await two.registry.rotateKey("acme", issued.record.id))!;
    await within(() => one.registry.authenticate(issued.key) === null && one.registry.authenticate(rotated.key)?.id === "acme", "the rotation");

    await one.registry.revokeKey("acme", rotated.record.id);
    const tookMs = await within(() => two.registry.authenticate(rotated.key) === null, "the revocation");
    assert.ok(tookMs < BOUND_MS);

    await two.registry.deleteTenant("acme");
    await within(() => one.registry.get("acme") === null, "the deletion");
    assert.deepEqual(one.changes.at(-1), { type: "deleted", tenantId: "acme", fromStore: true });
  });

  test("while the database is down a replica keeps its keys; once it is back, changes follow again", async () => {
    const one = await replica();
    const two = await replica();
    await one.registry.createTenant(newTenant("beta", {}));
    const k = (await one.registry.createKey("beta", null))!;
    await within(() => two.registry.authenticate(k.key)?.id === "beta", "the key on replica two");
    const errorsBefore = errors.length;
    await server.stop();
    await eventually(() => errors.length > errorsBefore, "the outage reported");
    assert.equal(two.registry.authenticate(k.key)?.id, "beta", "authentication from memory goes on");
    await assert.rejects(one.registry.createKey("beta", null), (err: Error) => err.name === "StoreUnavailableError");
    const recoveredBefore = recovered;
    await server.start();
    await eventually(() => recovered > recoveredBefore, "the watchers saying they follow again");
    // Retries: the pool's first attempt after the restart may still meet a cut connection.
    let revoked = null;
    for (let i = 0; i < 20 && !revoked; i++) revoked = await one.registry.revokeKey("beta", k.record.id).catch(() => null);
    assert.ok(revoked);
    await within(() => two.registry.authenticate(k.key) === null, "the revocation after the outage");
  });
});
