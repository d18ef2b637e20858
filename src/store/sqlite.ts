// The one way llamux opens its database, <data-dir>/llamux.db: every store
// (tenants, usage, responses) gets the same durability settings. WAL with
// synchronous=FULL makes a committed transaction survive a power cut or a
// kill -9, which is what "acknowledged means stored" rests on.
//
// The database holds key hashes, usage and every stored conversation, so it is
// owner-only: directories llamux creates are 0700, the database file 0600 (and
// SQLite gives its -wal and -shm files the database file's mode). Existing
// directories keep the mode their owner gave them (a data dir may be shared on
// purpose, with a group); the database files are llamux's own and are
// tightened to 0600 at every start.
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ConfigError } from "../config.js";

export const DB_FILE_NAME = "llamux.db";
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates `dir` (and missing parents) owner-only; an existing directory is left as it is. */
export function makePrivateDir(dir: string): void {
  // mkdir's mode is masked by the umask, which can only remove bits: 0700 stays 0700 or tighter.
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * Makes `dir` owner-only, creating it when needed, even when it exists with a
 * looser mode: only for directories llamux names and owns itself (the default
 * KV-cache directory under the data dir), never for one a user chose.
 */
export function tightenOwnDir(dir: string): void {
  makePrivateDir(dir);
  if ((fs.statSync(dir).mode & 0o077) !== 0) fs.chmodSync(dir, PRIVATE_DIR_MODE);
}

/** A warning when `dir` can be read or entered by others than its owner; null when it cannot (or does not exist). */
export function looseDirWarning(dir: string): string | null {
  let mode: number;
  try {
    mode = fs.statSync(dir).mode & 0o777;
  } catch {
    return null;
  }
  if ((mode & 0o077) === 0) return null;
  return `the data directory ${dir} has mode 0${mode.toString(8)}: others than its owner can list it (llamux.db itself is 0600); chmod 700 it unless that is on purpose`;
}

/** Creates `file` empty with mode 0600 when it does not exist, and sets 0600 on it (and its -wal, -shm) when it does. */
function makePrivateDbFiles(file: string): void {
  fs.closeSync(fs.openSync(file, "a", PRIVATE_FILE_MODE));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, PRIVATE_FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
}

/**
 * Opens (creating the directory when needed) `<dataDir>/llamux.db` and applies
 * `schema`; closes it again if that fails. A file that is not a usable SQLite
 * database is a ConfigError naming it (one line at start, no stack trace).
 */
export function openDatabase(dataDir: string, schema: string): { db: Database.Database; file: string } {
  makePrivateDir(dataDir);
  const file = path.join(dataDir, DB_FILE_NAME);
  makePrivateDbFiles(file);
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw unusable(file, err);
  }
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.exec(schema);
  } catch (err) {
    db.close();
    throw unusable(file, err);
  }
  return { db, file };
}

/** SQLite's "not a database" and "malformed" errors become one line naming the file; anything else is passed on. */
function unusable(file: string, err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && /^SQLITE_(NOTADB|CORRUPT|CANTOPEN|READONLY|IOERR)/.test(code)) {
    return new ConfigError(
      `the database ${file} cannot be used (${(err as Error).message}): restore it from a backup, or move it away to start with an empty one`,
    );
  }
  return err;
}
