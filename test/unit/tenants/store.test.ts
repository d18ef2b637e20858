// SqliteTenantStore (src/tenants/store.ts) against a real database in a temp
// dir: the TenantStore contract (tenantStoreContract.ts), and what is SQLite's
// own: pragmas, the shared db handle, old rows and the incarnation column
// added to an older file.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, beforeEach, describe, test } from "node:test";
import { DB_FILE_NAME, SqliteTenantStore } from "../../../src/tenants/store.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING } from "../../../src/tenants/types.js";
import { describeTenantStoreContract, UUID } from "./tenantStoreContract.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-store-test-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let tests = 0;
let contractDir = "";
describeTenantStoreContract("SqliteTenantStore", {
  reset: async () => {
    contractDir = path.join(root, `contract-${++tests}`);
  },
  open: async (nowSeconds) => SqliteTenantStore.open(contractDir, { nowSeconds }),
  rawKeys: async () => {
    const probe = SqliteTenantStore.open(contractDir);
    try {
      return probe.db.prepare("SELECT * FROM api_keys").all();
    } finally {
      await probe.close();
    }
  },
});

describe("SqliteTenantStore: what is SQLite's own", () => {
  let dir: string;
  let store: SqliteTenantStore;
  const clockSeconds = 1_700_000_000;
  const open = () => SqliteTenantStore.open(path.join(dir, "nested", "data"), { nowSeconds: () => clockSeconds });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(root, "own-"));
    store = open();
  });
  afterEach(async () => {
    await store.close();
  });

  test("creates the directory and llamux.db, in WAL mode with synchronous=FULL and foreign keys on", () => {
    assert.ok(fs.existsSync(path.join(dir, "nested", "data", DB_FILE_NAME)));
    assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(store.db.pragma("synchronous", { simple: true }), 2, "FULL is 2");
    assert.equal(store.db.pragma("foreign_keys", { simple: true }), 1);
  });

  test("the db handle is usable by other modules for their own tables", () => {
    store.db.exec("CREATE TABLE IF NOT EXISTS usage_test (tenant_id TEXT, tokens INTEGER)");
    store.db.prepare("INSERT INTO usage_test VALUES (?, ?)").run("acme", 5);
    assert.equal(store.db.prepare("SELECT tokens FROM usage_test").pluck().get(), 5);
  });

  test("close() is idempotent", async () => {
    await store.close();
    await store.close();
    assert.equal(store.db.open, false);
  });

  test("a row written with fewer limit fields loads with the missing ones null", async () => {
    store.db.prepare("INSERT INTO tenants (id, limits, scheduling, created_at, updated_at) VALUES ('old', '{\"maxTokens\": 7}', '{}', 1, 1)").run();
    const r = await store.getTenant("old");
    assert.deepEqual(r?.tenant.limits, { ...DEFAULT_LIMITS, maxTokens: 7 });
    assert.deepEqual(r?.tenant.scheduling, DEFAULT_SCHEDULING);
  });

  test("a database from before the column gets it, and every old row its own nonce, kept across opens", async () => {
    await store.close();
    fs.rmSync(path.join(dir, "nested"), { recursive: true, force: true });
    store = open();
    store.db.exec(
      "DROP TABLE api_keys; DROP TABLE tenants; CREATE TABLE tenants (id TEXT PRIMARY KEY, limits TEXT NOT NULL, scheduling TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;",
    );
    store.db.prepare("INSERT INTO tenants VALUES ('a', '{}', '{}', 1, 1), ('b', '{}', '{}', 1, 1)").run();
    await store.close();
    store = open();
    const [a, b] = (await store.listTenants()).map((r) => r.tenant.incarnation);
    assert.match(a ?? "", UUID);
    assert.match(b ?? "", UUID);
    assert.notEqual(a, b);
    await store.close();
    store = open();
    assert.deepEqual(
      (await store.listTenants()).map((r) => r.tenant.incarnation),
      [a, b],
    );
  });
});
