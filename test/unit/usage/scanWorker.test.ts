// SqliteUsageLog reads reports on a worker thread (sqliteScanWorker.ts): what
// it answers is what was committed, and a report asked for as the log closes
// is refused rather than left waiting for a worker that is gone.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { HOUR, SqliteUsageLog, type UsageRecord } from "../../../src/usage/usageLog.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-scan-worker-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const record = (id: string, atSeconds: number): UsageRecord => ({
  id,
  atSeconds,
  kind: "completions",
  tenantId: "acme",
  apiKeyId: "key_1",
  model: "m",
  batchId: null,
  requests: 1,
  inputTokens: 10,
  cachedTokens: 2,
  outputTokens: 5,
  price: null,
});

describe("usage report reads on the worker thread", () => {
  test("see every record committed before the scan, each scan a fresh snapshot", async () => {
    const log = SqliteUsageLog.open(path.join(dir, "a"));
    try {
      const scan = { fromSeconds: 0, toSeconds: 10 * HOUR, widthSeconds: 10 * HOUR, kind: null, tenantId: "acme" } as const;
      await log.record(record("r1", HOUR));
      const first = await log.scan(scan);
      assert.equal(
        first.reduce((n, r) => n + r.requests, 0),
        1,
      );
      await log.record(record("r2", 2 * HOUR + 7));
      await log.record(record("r2", 2 * HOUR + 7)); // the same id again counts once
      const second = await log.scan(scan);
      assert.equal(
        second.reduce((n, r) => n + r.requests, 0),
        2,
      );
      assert.equal(
        second.reduce((n, r) => n + r.outputTokens, 0),
        10,
      );
    } finally {
      await log.close();
    }
  });

  test("a scan in flight when the log closes is refused, and later scans too", async () => {
    const log = SqliteUsageLog.open(path.join(dir, "b"));
    const pending = log.scan({ fromSeconds: 0, toSeconds: HOUR, widthSeconds: HOUR, kind: null, tenantId: null });
    const refused = assert.rejects(pending, /closed/);
    await log.close();
    await refused;
    await assert.rejects(log.scan({ fromSeconds: 0, toSeconds: HOUR, widthSeconds: HOUR, kind: null, tenantId: null }), /closed/);
  });
});
