// AuditLog over a real SQLite store with a pinned clock: refused
// authentications past the window's limits are counted, and the window's
// summary is written when it ends, whether a refusal comes after it or not.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import type { Request, Response } from "express";
import { AuditLog } from "../../../src/audit/auditLog.js";
import { SqliteAuditStore } from "../../../src/audit/sqliteAuditStore.js";
import { createLogger } from "../../../src/logger.js";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const req = (address: string) => ({ socket: { remoteAddress: address }, method: "GET", originalUrl: "/v1/models?x=1" }) as unknown as Request;
const res = (requestId: string) => ({ locals: { requestId } }) as unknown as Response;
const refusal = { credential: "api_key" as const, reason: "incorrect" as const, presented: "lmx-bad" };

function open(windowMs: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-auditlog-"));
  dirs.push(dir);
  const store = SqliteAuditStore.open(dir);
  let now = 1_000_000;
  const audit = new AuditLog({ store, log: createLogger("silent"), adminKey: null, refusalLimits: { perAddress: 2, total: 3, windowMs }, nowMs: () => now });
  const all = () => store.scan(0, 1000);
  return { store, audit, all, advance: (ms: number) => (now += ms) };
}

describe("AuditLog: refused authentications", () => {
  test("past the limits only counted; the next refusal after the window writes its summary first", async () => {
    const { store, audit, all, advance } = open(60_000);
    for (let i = 0; i < 5; i++) audit.refused(req("::ffff:10.0.0.1"), res(`req_a${i}`), refusal);
    audit.refused(req("10.0.0.2"), res("req_b"), refusal);
    audit.refused(req("10.0.0.3"), res("req_c"), refusal);
    advance(60_000);
    audit.refused(req("10.0.0.1"), res("req_next"), refusal);
    await audit.close();
    const records = await all();
    assert.deepEqual(
      records.map((r) => [r.type, r.actor.ipAddress, r.requestId]),
      [
        ["authentication.failed", "10.0.0.1", "req_a0"],
        ["authentication.failed", "10.0.0.1", "req_a1"],
        ["authentication.failed", "10.0.0.2", "req_b"],
        ["authentication.suppressed", null, null],
        ["authentication.failed", "10.0.0.1", "req_next"],
      ],
    );
    assert.deepEqual(records[3]!.details, {
      window_start: 1000,
      window_end: 1060,
      recorded: 3,
      suppressed: 4,
      top_addresses: [
        { ip_address: "10.0.0.1", suppressed: 3 },
        { ip_address: "10.0.0.3", suppressed: 1 },
      ],
      other_suppressed: 0,
    });
    assert.equal(records[0]!.details.path, "/v1/models");
    await store.close();
  });

  test("a window that ends with no refusal after it still gets its summary (the timer)", async () => {
    const { store, audit, all, advance } = open(1000);
    for (let i = 0; i < 4; i++) audit.refused(req("10.0.0.9"), res(`req_${i}`), refusal);
    advance(1000);
    const deadline = Date.now() + 10_000;
    while (!(await all()).some((r) => r.type === "authentication.suppressed")) {
      assert.ok(Date.now() < deadline, "no summary from the timer");
      await new Promise((r) => setTimeout(r, 50));
    }
    await audit.close();
    const summary = (await all()).find((r) => r.type === "authentication.suppressed")!;
    assert.equal(summary.details.suppressed, 2);
    assert.equal((await all()).length, 3, "closing wrote no second summary: nothing was suppressed since");
    await store.close();
  });
});
