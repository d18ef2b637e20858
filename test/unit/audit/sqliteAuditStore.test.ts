// SqliteAuditStore (the embedded default) against the AuditStore contract, in
// the same llamux.db as the tenants.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import { SQLITE_AUDIT_SCHEMA, SqliteAuditStore } from "../../../src/audit/sqliteAuditStore.js";
import { verifyAuditStore } from "../../../src/audit/verifyCli.js";
import { SqliteTenantStore } from "../../../src/tenants/store.js";
import { describeAuditStoreContract, entry } from "./auditStoreContract.js";

const dirs: string[] = [];
const handles: Database.Database[] = [];
after(() => {
  for (const h of handles) if (h.open) h.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
let raw: Database.Database | null = null;

describeAuditStoreContract("SqliteAuditStore", {
  fresh: async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-audit-"));
    dirs.push(dir);
    const store = SqliteAuditStore.open(dir);
    raw = new Database(path.join(dir, "llamux.db"));
    handles.push(raw);
    return store;
  },
  exec: async (sql) => raw!.exec(sql),
  // What an owner of the file can do: drop the triggers, change the row, put them back.
  tamper: async (sql) => {
    raw!.exec("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;");
    raw!.exec(sql);
    raw!.exec(SQLITE_AUDIT_SCHEMA);
  },
});

describe("SqliteAuditStore in the tenants' database", () => {
  test("lives in llamux.db beside the tenants, over their handle, and survives a reopen", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-audit-"));
    dirs.push(dir);
    const tenants = SqliteTenantStore.open(dir);
    const store = new SqliteAuditStore(tenants.db);
    for (let i = 1; i <= 3; i++) await store.append(entry(i));
    await store.close(); // not its handle: the tenants' stays open
    assert.equal(tenants.db.open, true);
    await tenants.close();
    const again = SqliteAuditStore.open(dir);
    await again.append(entry(4));
    const outcome = await verifyAuditStore(again);
    assert.equal(outcome.ok, true);
    assert.match(outcome.message, /4 records/);
    await again.close();
  });
});
