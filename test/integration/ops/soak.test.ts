// A short soak (bench/soak.ts) against the real server: 16 concurrent streams
// over 4 slots for 15 s, a fifth of them hung up on at a random moment
// (waiting for a slot or mid-stream). Every request must be accounted for on
// both sides (the client's outcomes and the server's /metrics counters, kind
// by kind) and no slot, running or waiting request may outlive the load.
// Memory growth is the bench's target (`llamux bench soak`), not asserted here.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runSoak, SOAK_DEFAULTS } from "../../../bench/soak.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
before(async () => {
  // No queue timeout: however slow the machine, nothing is shed, so every
  // request ends completed or cancelled (4 running + 32 waiting never refuses 16 clients).
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "1024", "--queue-timeout-ms", "0"]);
});
after(async () => {
  await t?.close();
});

describe("soak", () => {
  test("16 streams with random disconnects for 15 s: every request accounted for, no slot leaked", async () => {
    const r = await runSoak({
      ...SOAK_DEFAULTS,
      url: t.url,
      model: t.modelId,
      durationMs: 15_000,
      concurrency: 16,
      promptTokens: 16,
      maxTokens: 32,
      cancelMaxTokens: 512,
      seed: 7,
      rss: { frontPid: process.pid, workerPid: () => t.srv.engine.pid },
      settleMs: 10_000,
    });
    const a = r.accounting;
    assert.deepEqual(a.mismatches, [], JSON.stringify(a));
    assert.ok(a.client.completed > 0, "requests completed");
    assert.ok(a.client.cancelled > 0, "clients hung up");
    assert.equal(a.client.rejected, 0);
    assert.equal(a.server.total, a.sent);
    assert.deepEqual(r.afterSettle.slotsBusy, 0, "no slot leaked");
    assert.equal(r.afterSettle.requestsRunning, 0);
    assert.equal(r.afterSettle.requestsWaiting, 0);
    assert.notEqual(r.afterSettle.settledInMs, null);
    assert.ok(r.rss.samples.length > 0 && r.rss.samples.every((s) => s.workerBytes !== null), "the worker's memory was sampled");
  });
});
