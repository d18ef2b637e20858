// SqliteBackgroundStore (src/store/sqliteBackgroundStore.ts) on a real database
// in a temp dir, next to the conversation store whose responses it extends:
// the BackgroundStore contract (backgroundStoreContract.ts). SQLite is one
// process per data directory: a process that died is any previous one, so
// failUnfinished fails everything unfinished at the next open.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { SqliteBackgroundStore } from "../../../src/store/sqliteBackgroundStore.js";
import { SqliteConversationStore } from "../../../src/store/sqliteConversationStore.js";
import { describeBackgroundStoreContract, type BackgroundStores } from "./backgroundStoreContract.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bg-store-test-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let tests = 0;
let dataDir = "";
const close = async (s: BackgroundStores) => {
  await s.store.close();
  await s.conversations.close();
};

describeBackgroundStoreContract("SqliteBackgroundStore", {
  reset: async () => {
    dataDir = path.join(root, `contract-${++tests}`);
  },
  open: async (options) => {
    const conversations = SqliteConversationStore.open(dataDir, options);
    return { conversations, store: new SqliteBackgroundStore(conversations.db) };
  },
  // Every write was committed when it resolved: closing is all a death leaves.
  die: close,
  close,
  count: async (table) => {
    const probe = SqliteConversationStore.open(dataDir, { responseTtlSeconds: 0 });
    try {
      new SqliteBackgroundStore(probe.db);
      return probe.db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
    } finally {
      await probe.close();
    }
  },
});
