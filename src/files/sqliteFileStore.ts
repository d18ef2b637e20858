// FileStore on the local data dir: metadata in <data-dir>/llamux.db, contents
// in <data-dir>/files/<id> (0600, the directory 0700), uploads streamed to
// <data-dir>/files/tmp first and renamed into place once complete, so a
// recorded file is always whole. A row is written after its contents and
// deleted before them: a crash leaves at worst an orphan file, which start
// removes, never a row without contents.
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import type Database from "better-sqlite3";
import { openDatabase, makePrivateDir, PRIVATE_FILE_MODE } from "../store/sqlite.js";
import { nowSeconds, randomId } from "../openai/common.js";
import type { FileListOptions, FileObject, FilePurpose, FileStore } from "./fileStore.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX IF NOT EXISTS files_order ON files(tenant_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS files_id ON files(id);
`;

interface Row {
  id: string;
  seq: number;
  created_at: number;
  filename: string;
  purpose: string;
  bytes: number;
}

const toObject = (r: Row): FileObject => ({
  id: r.id,
  object: "file",
  bytes: r.bytes,
  created_at: r.created_at,
  expires_at: null,
  filename: r.filename,
  purpose: r.purpose as FilePurpose,
  status: "processed",
  status_details: null,
});

export class SqliteFileStore implements FileStore {
  private readonly dir: string;
  private readonly tmp: string;

  private constructor(
    private readonly db: Database.Database,
    dataDir: string,
  ) {
    this.dir = path.join(dataDir, "files");
    this.tmp = path.join(this.dir, "tmp");
  }

  static open(dataDir: string): SqliteFileStore {
    const { db } = openDatabase(dataDir, SCHEMA);
    const store = new SqliteFileStore(db, dataDir);
    makePrivateDir(store.dir);
    // Uploads cut short by a crash are garbage; contents without a row too.
    fs.rmSync(store.tmp, { recursive: true, force: true });
    makePrivateDir(store.tmp);
    const known = new Set((db.prepare("SELECT id FROM files").all() as Array<{ id: string }>).map((r) => r.id));
    for (const name of fs.readdirSync(store.dir)) {
      if (name !== "tmp" && !known.has(name)) fs.rmSync(path.join(store.dir, name), { force: true });
    }
    return store;
  }

  tmpDir(): string {
    return this.tmp;
  }

  private record(tenantId: string, id: string, meta: { filename: string; purpose: FilePurpose; bytes: number }): FileObject {
    const row: Row = { id, seq: 0, created_at: nowSeconds(), filename: meta.filename, purpose: meta.purpose, bytes: meta.bytes };
    this.db
      .prepare(
        "INSERT INTO files (tenant_id, id, seq, created_at, filename, purpose, bytes) VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM files), ?, ?, ?, ?)",
      )
      .run(tenantId, id, row.created_at, row.filename, row.purpose, row.bytes);
    return toObject(row);
  }

  async adopt(tenantId: string, tmpPath: string, meta: { filename: string; purpose: FilePurpose; bytes: number }): Promise<FileObject> {
    const id = randomId("file");
    const dest = path.join(this.dir, id);
    await fs.promises.chmod(tmpPath, PRIVATE_FILE_MODE);
    await fs.promises.rename(tmpPath, dest);
    return this.record(tenantId, id, meta);
  }

  async write(tenantId: string, meta: { filename: string; purpose: FilePurpose }, lines: AsyncIterable<string> | Iterable<string>): Promise<FileObject> {
    const tmpPath = path.join(this.tmp, randomId("w"));
    const out = fs.createWriteStream(tmpPath, { mode: PRIVATE_FILE_MODE });
    let bytes = 0;
    try {
      for await (const line of lines) {
        const chunk = `${line}\n`;
        bytes += Buffer.byteLength(chunk);
        if (!out.write(chunk)) await once(out, "drain");
      }
      out.end();
      await once(out, "finish");
      // The output of a batch is read after its status says completed: it must be on disk first.
      const fd = await fs.promises.open(tmpPath, "r");
      await fd.sync();
      await fd.close();
    } catch (err) {
      out.destroy();
      await fs.promises.rm(tmpPath, { force: true });
      throw err;
    }
    return this.adopt(tenantId, tmpPath, { ...meta, bytes });
  }

  async get(tenantId: string, id: string): Promise<FileObject | null> {
    const row = this.db.prepare("SELECT id, seq, created_at, filename, purpose, bytes FROM files WHERE tenant_id = ? AND id = ?").get(tenantId, id) as
      | Row
      | undefined;
    return row ? toObject(row) : null;
  }

  async list(tenantId: string, opts: FileListOptions): Promise<{ data: FileObject[]; hasMore: boolean }> {
    const desc = opts.order === "desc";
    let cursor: number | null = null;
    if (opts.after !== null) {
      const r = this.db.prepare("SELECT seq FROM files WHERE tenant_id = ? AND id = ?").get(tenantId, opts.after) as { seq: number } | undefined;
      if (!r) return { data: [], hasMore: false };
      cursor = r.seq;
    }
    const where = ["tenant_id = ?"];
    const args: unknown[] = [tenantId];
    if (cursor !== null) {
      where.push(desc ? "seq < ?" : "seq > ?");
      args.push(cursor);
    }
    if (opts.purpose !== null) {
      where.push("purpose = ?");
      args.push(opts.purpose);
    }
    const rows = this.db
      .prepare(`SELECT id, seq, created_at, filename, purpose, bytes FROM files WHERE ${where.join(" AND ")} ORDER BY seq ${desc ? "DESC" : "ASC"} LIMIT ?`)
      .all(...args, opts.limit + 1) as Row[];
    return { data: rows.slice(0, opts.limit).map(toObject), hasMore: rows.length > opts.limit };
  }

  async open(tenantId: string, id: string): Promise<fs.ReadStream | null> {
    if (!(await this.get(tenantId, id))) return null;
    // Opened before it is returned: a file deleted meanwhile is a 404, not a stream error.
    try {
      const handle = await fs.promises.open(path.join(this.dir, id), "r");
      return handle.createReadStream();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const { changes } = this.db.prepare("DELETE FROM files WHERE tenant_id = ? AND id = ?").run(tenantId, id);
    if (changes === 0) return false;
    await fs.promises.rm(path.join(this.dir, id), { force: true });
    return true;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
