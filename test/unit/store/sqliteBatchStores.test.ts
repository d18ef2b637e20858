// SqliteFileStore and SqliteBatchStore (src/files/sqliteFileStore.ts,
// src/batch/sqliteBatchStore.ts) on a real database in a temp dir: the
// FileStore and BatchStore contracts (batchStoreContract.ts). A second handle
// is a second open of the same data directory.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { SqliteBatchStore } from "../../../src/batch/sqliteBatchStore.js";
import { SqliteFileStore } from "../../../src/files/sqliteFileStore.js";
import { describeBatchStoresContract, type BatchStores } from "./batchStoreContract.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-batch-store-test-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let tests = 0;
let dataDir = "";
const open = async (): Promise<BatchStores> => ({ files: SqliteFileStore.open(dataDir), batches: SqliteBatchStore.open(dataDir) });

describeBatchStoresContract("SQLite", {
  open: async () => {
    dataDir = path.join(root, `contract-${++tests}`);
    return open();
  },
  reopen: open,
  close: async (s) => {
    await s.batches.close();
    await s.files.close();
  },
});
