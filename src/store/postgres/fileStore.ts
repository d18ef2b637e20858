// FileStore in PostgreSQL, shared by every replica on the database: a file
// uploaded through one replica is listed, read and deleted through any other.
// Tenant-scoped as SqliteFileStore: every statement names the tenant, and
// another tenant's id is answered as a missing one.
//
// Contents are rows of file_chunks, CHUNK_BYTES each, not one value: a file
// may be 200 MB (--max-file-bytes), and one bytea that size would sit whole in
// this process's memory (twice while pg encodes or decodes it) and in the
// server's, and could only be read back whole. In chunks, an upload is copied
// from its local temp file a chunk at a time and a download streams a chunk at
// a time (one more fetched ahead), so memory stays at a few MiB per transfer.
// (Large objects would stream too, but live outside the row: a delete or a
// tenant's rows going would not take them along, and reading needs a
// transaction held open for the whole download.)
//
// A file is written in one transaction, its row and every chunk: it is
// visible whole or not at all, and a crash or an error mid-write leaves
// nothing behind. Uploads arrive in a local temp dir first (multer streams
// there), which is this replica's own.
import fs from "node:fs";
import { Readable } from "node:stream";
import { makePrivateDir } from "../sqlite.js";
import { nowSeconds, randomId } from "../../openai/common.js";
import type { FileListOptions, FileObject, FilePurpose, FileStore } from "../../files/fileStore.js";
import { num, type PgDatabase } from "./db.js";

/** Bytes per row of file_chunks. */
export const CHUNK_BYTES = 1024 * 1024;

type Row = {
  id: string;
  created_at: unknown;
  filename: string;
  purpose: string;
  bytes: unknown;
};

const COLUMNS = "id, created_at, filename, purpose, bytes";

const toObject = (r: Row): FileObject => ({
  id: r.id,
  object: "file",
  bytes: num(r.bytes),
  created_at: num(r.created_at),
  expires_at: null,
  filename: r.filename,
  purpose: r.purpose as FilePurpose,
  status: "processed",
  status_details: null,
});

/** Cuts a stream of buffers or strings into CHUNK_BYTES pieces (the last one shorter). */
async function* rechunk(source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const piece of source) {
    let buf = typeof piece === "string" ? Buffer.from(piece) : piece;
    while (buf.length > 0) {
      const take = Math.min(buf.length, CHUNK_BYTES - size);
      parts.push(buf.subarray(0, take));
      size += take;
      buf = buf.subarray(take);
      if (size === CHUNK_BYTES) {
        yield Buffer.concat(parts, size);
        parts = [];
        size = 0;
      }
    }
  }
  if (size > 0) yield Buffer.concat(parts, size);
}

export class PgFileStore implements FileStore {
  private constructor(
    private readonly db: PgDatabase,
    private readonly tmp: string,
  ) {}

  /** `tmpDir`: a local directory of this replica's for uploads in progress (emptied now: what is there is from a crash). */
  static open(db: PgDatabase, tmpDir: string): PgFileStore {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    makePrivateDir(tmpDir);
    return new PgFileStore(db, tmpDir);
  }

  tmpDir(): string {
    return this.tmp;
  }

  /** Inserts the row and the chunks of `contents` in one transaction; bytes counted as they go. */
  private async store(tenantId: string, meta: { filename: string; purpose: FilePurpose }, contents: AsyncIterable<Buffer>): Promise<FileObject> {
    const id = randomId("file");
    const createdAt = nowSeconds();
    return this.db.transaction(async (tx) => {
      await tx.execute("INSERT INTO files (tenant_id, id, created_at, filename, purpose, bytes, chunks) VALUES ($1, $2, $3, $4, $5, 0, 0)", [
        tenantId,
        id,
        createdAt,
        meta.filename,
        meta.purpose,
      ]);
      let n = 0;
      let bytes = 0;
      for await (const chunk of contents) {
        await tx.execute("INSERT INTO file_chunks (tenant_id, file_id, n, data) VALUES ($1, $2, $3, $4)", [tenantId, id, n++, chunk]);
        bytes += chunk.length;
      }
      const [row] = await tx.query<Row>(`UPDATE files SET bytes = $1, chunks = $2 WHERE tenant_id = $3 AND id = $4 RETURNING ${COLUMNS}`, [
        bytes,
        n,
        tenantId,
        id,
      ]);
      return toObject(row!);
    });
  }

  async adopt(tenantId: string, tmpPath: string, meta: { filename: string; purpose: FilePurpose; bytes: number }): Promise<FileObject> {
    const input = fs.createReadStream(tmpPath, { highWaterMark: CHUNK_BYTES });
    try {
      return await this.store(tenantId, meta, rechunk(input as AsyncIterable<Buffer>));
    } finally {
      input.destroy();
      await fs.promises.rm(tmpPath, { force: true });
    }
  }

  async write(tenantId: string, meta: { filename: string; purpose: FilePurpose }, lines: AsyncIterable<string> | Iterable<string>): Promise<FileObject> {
    async function* withNewlines() {
      for await (const line of lines) yield `${line}\n`;
    }
    return this.store(tenantId, meta, rechunk(withNewlines()));
  }

  async get(tenantId: string, id: string): Promise<FileObject | null> {
    const [row] = await this.db.query<Row>(`SELECT ${COLUMNS} FROM files WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return row ? toObject(row) : null;
  }

  async list(tenantId: string, opts: FileListOptions): Promise<{ data: FileObject[]; hasMore: boolean }> {
    const desc = opts.order === "desc";
    const where = ["tenant_id = $1"];
    const args: unknown[] = [tenantId];
    if (opts.after !== null) {
      const [r] = await this.db.query<{ seq: unknown }>("SELECT seq FROM files WHERE tenant_id = $1 AND id = $2", [tenantId, opts.after]);
      if (!r) return { data: [], hasMore: false };
      args.push(num(r.seq));
      where.push(desc ? `seq < $${args.length}` : `seq > $${args.length}`);
    }
    if (opts.purpose !== null) {
      args.push(opts.purpose);
      where.push(`purpose = $${args.length}`);
    }
    args.push(opts.limit + 1);
    const rows = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM files WHERE ${where.join(" AND ")} ORDER BY seq ${desc ? "DESC" : "ASC"} LIMIT $${args.length}`,
      args,
    );
    return { data: rows.slice(0, opts.limit).map(toObject), hasMore: rows.length > opts.limit };
  }

  async open(tenantId: string, id: string): Promise<Readable | null> {
    const [row] = await this.db.query<{ chunks: unknown }>("SELECT chunks FROM files WHERE tenant_id = $1 AND id = $2", [tenantId, id]);
    if (!row) return null;
    const chunks = num(row.chunks);
    const db = this.db;
    const fetch = async (n: number): Promise<Buffer> => {
      const [c] = await db.query<{ data: Buffer }>("SELECT data FROM file_chunks WHERE tenant_id = $1 AND file_id = $2 AND n = $3", [tenantId, id, n]);
      // Deleted while being read: the reader gets an error, never a silently short file.
      if (!c) throw new Error(`file ${id} was deleted while it was being read`);
      return c.data;
    };
    async function* contents(): AsyncGenerator<Buffer> {
      // One chunk fetched ahead, so the database and the consumer work at once.
      let next = chunks > 0 ? fetch(0) : null;
      for (let n = 0; next !== null; n++) {
        const current = next;
        next = n + 1 < chunks ? fetch(n + 1) : null;
        // An abandoned prefetch must not become an unhandled rejection.
        next?.catch(() => undefined);
        yield await current;
      }
    }
    return Readable.from(contents(), { objectMode: false });
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    // Its chunks go with it (ON DELETE CASCADE), in the same statement.
    return (await this.db.execute("DELETE FROM files WHERE tenant_id = $1 AND id = $2", [tenantId, id])) === 1;
  }

  async close(): Promise<void> {
    await fs.promises.rm(this.tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}
