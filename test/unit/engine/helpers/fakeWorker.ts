// A fake engine worker for EngineClient tests: `source` is written to a temp
// .mjs file (the client forks it as its worker), which may append every
// message it receives to FAKE_WORKER_LOG and announce FAKE_WORKER_VERSION as
// its protocol version. Registers the file's before/after hooks.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { PROTOCOL_VERSION } from "../../../../engine/protocol.js";

export interface FakeWorker<M> {
  /** The worker script to pass as `workerEntry`. */
  readonly entry: string;
  readonly logFile: string;
  /** Every message the workers received so far, with the pid that received it. */
  readLog(): Array<{ pid: number; msg: M }>;
}

export function fakeWorker<M>(source: string, tmpPrefix: string): FakeWorker<M> {
  let dir = "";
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    fs.writeFileSync(path.join(dir, "fakeWorker.mjs"), source);
    process.env.FAKE_WORKER_LOG = path.join(dir, "log.jsonl");
    process.env.FAKE_WORKER_VERSION = String(PROTOCOL_VERSION);
  });
  after(() => {
    delete process.env.FAKE_WORKER_LOG;
    delete process.env.FAKE_WORKER_VERSION;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    get entry() {
      return path.join(dir, "fakeWorker.mjs");
    },
    get logFile() {
      return path.join(dir, "log.jsonl");
    },
    readLog() {
      const file = path.join(dir, "log.jsonl");
      return fs.existsSync(file)
        ? fs
            .readFileSync(file, "utf8")
            .trim()
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l))
        : [];
    },
  };
}

/** Polls `cond` every 10 ms for up to 10 s. */
export async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
