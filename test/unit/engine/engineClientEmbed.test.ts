// EngineClient.embed against a fake worker: vectors cross the IPC as
// Float32Arrays; a worker that is not ready answers engine_unavailable, one
// that dies mid-request engine_restarted (and the restarted worker serves
// again); an aborted request rejects at once and the worker is told to cancel.
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { fakeWorker, waitFor } from "./helpers/fakeWorker.js";
import { EngineClient } from "../../../engine/client.js";
import type { EmbedRequest, WorkerOptions } from "../../../engine/protocol.js";

// Tenant "crash" kills the worker, "hang" is never answered; others get one
// vector [index, inputs] per input and 3 tokens each.
const FAKE_WORKER = `
import fs from "node:fs";
const log = process.env.FAKE_WORKER_LOG;
process.on("message", (msg) => {
  fs.appendFileSync(log, JSON.stringify({ pid: process.pid, msg }) + "\\n");
  if (msg.t === "shutdown") process.exit(0);
  if (msg.t !== "embed") return;
  if (msg.req.tenant === "crash") process.exit(3);
  if (msg.req.tenant === "hang") return;
  const n = msg.req.inputs.length;
  process.send({ t: "embedded", id: msg.id, vectors: msg.req.inputs.map((_, i) => new Float32Array([i, n])), promptTokens: msg.req.inputs.map(() => 3) });
});
process.on("disconnect", () => process.exit(0));
process.send({ t: "ready", v: Number(process.env.FAKE_WORKER_VERSION), model: { id: "fake", slots: 1, embeddingSize: 2 } });
`;

const workerOptions: WorkerOptions = {
  modelPath: "/nonexistent",
  modelId: "fake",
  slots: 1,
  contextPerSlot: 256,
  threads: 1,
  gpu: "off",
  chatTemplateFile: null,
  stepTokens: 64,
  coalesceMs: 0,
};
const request = (tenant: string, inputs = 2): EmbedRequest => ({ tenant, inputs: Array.from({ length: inputs }, (_, i) => ({ kind: "text", text: `t${i}` })) });

const worker = fakeWorker<{ t: string; id?: string }>(FAKE_WORKER, "llamux-embed-client-");
const readLog = () => worker.readLog();

describe("EngineClient.embed", () => {
  test("not started, ready, died mid-request, restarted, stopped", async () => {
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 10, max: 10 } });
    try {
      const early = await client.embed(request("a"));
      assert.ok("error" in early);
      assert.equal(early.error.code, "engine_unavailable");

      await client.start();
      const ok = await client.embed(request("a", 3));
      assert.ok(!("error" in ok));
      assert.ok(ok.vectors.every((v) => v instanceof Float32Array));
      assert.deepEqual(
        ok.vectors.map((v) => Array.from(v)),
        [
          [0, 3],
          [1, 3],
          [2, 3],
        ],
      );
      assert.deepEqual(ok.promptTokens, [3, 3, 3]);

      const restarted = new Promise<void>((r) => client.once("ready", () => r()));
      const waiting = client.embed(request("hang"));
      const crashed = await client.embed(request("crash"));
      assert.ok("error" in crashed);
      assert.equal(crashed.error.code, "engine_restarted");
      // Every request the dead worker held fails, not only the one that killed it.
      const lost = await waiting;
      assert.ok("error" in lost && lost.error.code === "engine_restarted");

      await restarted;
      const again = await client.embed(request("a", 1));
      assert.ok(!("error" in again));
      assert.deepEqual(Array.from(again.vectors[0]!), [0, 1]);
    } finally {
      await client.stop();
    }
    const stopped = await client.embed(request("a"));
    assert.ok("error" in stopped && stopped.error.code === "engine_unavailable");
  });

  test("an abort rejects with its reason at once and cancels the request in the worker", async () => {
    fs.rmSync(worker.logFile, { force: true });
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry });
    try {
      await client.start();
      const ac = new AbortController();
      const pending = client.embed(request("hang"), ac.signal);
      await waitFor(() => readLog().some((l) => l.msg.t === "embed"), "the embed message");
      ac.abort("client_left");
      await assert.rejects(pending, (err) => err === "client_left");
      const id = readLog().find((l) => l.msg.t === "embed")!.msg.id;
      await waitFor(() => readLog().some((l) => l.msg.t === "cancel" && l.msg.id === id), "the cancel");

      const already = new AbortController();
      already.abort("gone");
      await assert.rejects(client.embed(request("a"), already.signal), (err) => err === "gone");
    } finally {
      await client.stop();
    }
  });
});
