// The one way llamux opens its database, <data-dir>/llamux.db: every store
// (tenants, usage, responses) gets the same durability settings. WAL with
// synchronous=FULL makes a committed transaction survive a power cut or a
// kill -9, which is what "acknowledged means stored" rests on.
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

export const DB_FILE_NAME = "llamux.db";

/** Opens (creating the directory when needed) `<dataDir>/llamux.db` and applies `schema`; closes it again if that fails. */
export function openDatabase(dataDir: string, schema: string): { db: Database.Database; file: string } {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, DB_FILE_NAME);
  const db = new Database(file);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.exec(schema);
  } catch (err) {
    db.close();
    throw err;
  }
  return { db, file };
}
