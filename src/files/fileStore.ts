// Uploaded and generated files (/v1/files): metadata in a store, contents on
// disk. The interface is what a PostgreSQL implementation (shared metadata,
// shared or object storage for contents) must provide; SqliteFileStore is the
// embedded default. Every method is scoped by tenant: another tenant's id is
// answered exactly as a missing one.
import type { Readable } from "node:stream";

export type FilePurpose = "batch" | "batch_output";

/** OpenAI's File object. */
export interface FileObject {
  id: string;
  object: "file";
  bytes: number;
  created_at: number;
  expires_at: number | null;
  filename: string;
  purpose: FilePurpose;
  status: "processed";
  status_details: null;
}

export interface FileListOptions {
  /** A file id: list the files after it in `order`. */
  after: string | null;
  limit: number;
  order: "asc" | "desc";
  purpose: string | null;
}

export interface FileStore {
  /**
   * A new file whose contents are at `tmpPath` (written under tmpDir(), on the
   * same file system): moved into place, owner-only, and recorded.
   */
  adopt(tenantId: string, tmpPath: string, meta: { filename: string; purpose: FilePurpose; bytes: number }): Promise<FileObject>;
  /** A new file written from `lines` (each without its newline). */
  write(tenantId: string, meta: { filename: string; purpose: FilePurpose }, lines: AsyncIterable<string> | Iterable<string>): Promise<FileObject>;
  get(tenantId: string, id: string): Promise<FileObject | null>;
  list(tenantId: string, opts: FileListOptions): Promise<{ data: FileObject[]; hasMore: boolean }>;
  /** The contents as a stream; null when there is no such file of the tenant. */
  open(tenantId: string, id: string): Promise<Readable | null>;
  delete(tenantId: string, id: string): Promise<boolean>;
  /** Where uploads are streamed before adopt() (owner-only). */
  tmpDir(): string;
  close(): Promise<void>;
}
