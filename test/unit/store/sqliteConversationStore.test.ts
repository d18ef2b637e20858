// SqliteConversationStore (src/store/sqliteConversationStore.ts) against a real
// database in a temp dir: the ConversationStore contract
// (conversationStoreContract.ts), and what is SQLite's own: pragmas, the
// batched purge, the output-item backfill at open.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, beforeEach, describe, test } from "node:test";
import { SqliteConversationStore, type SqliteConversationStoreOptions } from "../../../src/store/sqliteConversationStore.js";
import { DB_FILE_NAME } from "../../../src/tenants/store.js";
import { assistant, DAY, describeConversationStoreContract, user } from "./conversationStoreContract.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-conv-store-test-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let tests = 0;
let dataDir = "";
// The contract's count() reads through a connection of its own (the store under test may be closed meanwhile).
describeConversationStoreContract("SqliteConversationStore", {
  reset: async () => {
    dataDir = path.join(root, `contract-${++tests}`);
  },
  open: async (options) => SqliteConversationStore.open(dataDir, options),
  count: async (sql, ...params) => {
    const probe = SqliteConversationStore.open(dataDir, { responseTtlSeconds: 0 });
    try {
      return probe.db
        .prepare(sql)
        .pluck()
        .get(...params) as number;
    } finally {
      await probe.close();
    }
  },
});

describe("SqliteConversationStore: what is SQLite's own", () => {
  let dir: string;
  let store: SqliteConversationStore;
  let clockSeconds: number;
  const open = (options: Partial<SqliteConversationStoreOptions> = {}) =>
    SqliteConversationStore.open(path.join(dir, "data"), { responseTtlSeconds: 30 * DAY, nowSeconds: () => clockSeconds, ...options });
  const count = (sql: string, ...params: unknown[]) =>
    store.db
      .prepare(sql)
      .pluck()
      .get(...params) as number;
  const response = (id: string, createdAtSeconds = clockSeconds) => ({
    id,
    createdAtSeconds,
    body: { id, object: "response", output: [assistant(`out_${id}`, "reply")] },
    inputItems: [user(`m_${id}`, "x")],
  });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(root, "own-"));
    clockSeconds = 1_700_000_000;
    store = open();
  });
  afterEach(async () => {
    await store.close();
  });

  test("uses <data-dir>/llamux.db in WAL mode with synchronous=FULL and foreign keys on; close() closes it", async () => {
    assert.equal(store.file, path.join(dir, "data", DB_FILE_NAME));
    assert.ok(fs.existsSync(store.file));
    assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(store.db.pragma("synchronous", { simple: true }), 2, "FULL is 2");
    assert.equal(store.db.pragma("foreign_keys", { simple: true }), 1);
    await store.close();
    assert.equal(store.db.open, false);
  });

  test("the purge deletes in batches until nothing expired is left", async () => {
    const insert = store.db.transaction(() => {
      for (let i = 0; i < 1234; i++) {
        void store.commitResponse({ tenantId: i % 2 ? "acme" : "beta", response: response(`resp_${i}`), conversation: null });
      }
    });
    insert();
    clockSeconds += 31 * DAY;
    assert.equal(await store.purgeExpired(), 1234);
    assert.equal(count("SELECT COUNT(*) FROM responses"), 0);
    assert.equal(count("SELECT COUNT(*) FROM response_input_items"), 0);
  });

  test("responses stored before the output-item rows existed get them once, at open", async () => {
    await store.commitResponse({ tenantId: "a", response: response("resp_1"), conversation: null });
    store.db.exec("DELETE FROM response_output_items; DELETE FROM conversation_store_migrations;");
    await store.close();
    store = open();
    assert.ok((await store.findItems("a", ["out_resp_1"])).has("out_resp_1"));
    await store.close();
    store = open();
    assert.equal(count("SELECT count(*) FROM response_output_items"), 1, "backfilled once, not again");
  });
});
