// Worker-thread side of SqliteUsageLog.scan: runs a report's aggregate queries
// on a read-only connection of its own, off the front's event loop. A month of
// per-request records summed by SQLite takes hundreds of milliseconds, and any
// tenant may ask for its own report: on the main thread that would hold every
// other tenant's streams for as long. WAL lets this reader see every committed
// record while the main connection goes on writing.
import Database from "better-sqlite3";
import { parentPort, workerData } from "node:worker_threads";

export interface ScanJob {
  id: number;
  /** SQL and named parameters of each part of the scan, run in one read transaction. */
  parts: { sql: string; params: Record<string, unknown> }[];
}

export type ScanReply = { id: number; ok: true; rows: unknown[] } | { id: number; ok: false; message: string };

if (!parentPort) throw new Error("sqliteScanWorker runs as a worker thread");
const port = parentPort;
const db = new Database((workerData as { file: string }).file, { readonly: true, fileMustExist: true });
db.pragma("busy_timeout = 5000");
// One snapshot for every part of a scan (rollup hours and edge records), as the single-connection reads had.
const runParts = db.transaction((parts: ScanJob["parts"]) => parts.flatMap((p) => db.prepare(p.sql).all(p.params)));

port.on("message", (job: ScanJob) => {
  let reply: ScanReply;
  try {
    reply = { id: job.id, ok: true, rows: runParts(job.parts) };
  } catch (err) {
    reply = { id: job.id, ok: false, message: (err as Error).message };
  }
  port.postMessage(reply);
});
