// EngineClient after worker crashes, against a fake worker that dies on a
// prompt starting with '#': the tenant whose request it was reading is
// quarantined after two crashes, others are not, and generations submitted
// while the worker restarts wait for it instead of failing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fakeWorker, waitFor } from "./helpers/fakeWorker.js";
import { EngineClient, type EngineEvent } from "../../../engine/client.js";
import type { EngineRequest, WorkerOptions } from "../../../engine/protocol.js";

const FAKE_WORKER = `
import fs from "node:fs";
const log = process.env.FAKE_WORKER_LOG;
process.on("message", (msg) => {
  fs.appendFileSync(log, JSON.stringify({ pid: process.pid, msg }) + "\\n");
  if (msg.t === "shutdown") process.exit(0);
  if (msg.t !== "submit") return;
  if (msg.req.prompt.text.startsWith("#")) process.exit(3);
  process.send({ t: "accepted", id: msg.id, promptTokens: 1, promptText: null });
});
process.on("disconnect", () => process.exit(0));
process.send({ t: "ready", v: Number(process.env.FAKE_WORKER_VERSION), model: { id: "fake", slots: 4 } });
`;

const workerOptions: WorkerOptions = {
  modelPath: "/nonexistent", modelId: "fake", slots: 4, contextPerSlot: 256, threads: 1, gpu: "off", chatTemplateFile: null, stepTokens: 64, coalesceMs: 0,
};
const request = (tenant: string, text: string): EngineRequest => ({
  tenant,
  prompt: { kind: "text", text },
  maxTokens: 1,
  stop: [],
  sampling: { temperature: 1, topP: 1, topK: null, minP: null, seed: null, presencePenalty: 0, frequencyPenalty: 0, repeatPenalty: null, logitBias: {}, ignoreEos: false },
  echo: false,
  priority: 0,
});

const worker = fakeWorker<{ t: string; req?: EngineRequest }>(FAKE_WORKER, "llamux-client-crash-");

async function first(events: AsyncIterableIterator<EngineEvent>): Promise<EngineEvent | undefined> {
  return (await events.next()).value as EngineEvent | undefined;
}

describe("EngineClient crash quarantine", () => {
  test("two crashes while reading a tenant's requests quarantine that tenant, not the one generating beside it", async () => {
    let now = 1_000_000;
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 10, max: 10 }, nowMs: () => now });
    try {
      await client.start();
      for (let i = 0; i < 2; i++) {
        const victim = client.submit(request("victim", "Once upon a time"));
        assert.equal((await first(victim))?.type, "accepted");
        const crash = await first(client.submit(request("attacker", `# ${i}`)));
        assert.equal(crash?.type === "error" && crash.error.code, "engine_restarted");
        assert.equal((await first(victim))?.type, "error", "the victim's request in flight fails with it");
        await waitFor(() => client.ready, "the restart");
        now += 1000;
      }
      const refused = await first(client.submit(request("attacker", "Once upon a time")));
      assert.ok(refused?.type === "error");
      assert.equal(refused.error.code, "engine_crash_quarantine");
      assert.equal(refused.error.retryAfterSeconds, 59);
      assert.equal((await first(client.submit(request("victim", "Once upon a time"))))?.type, "accepted");
      // The cool-down ends.
      now += 60_000;
      assert.equal((await first(client.submit(request("attacker", "Once upon a time"))))?.type, "accepted");
    } finally {
      await client.stop();
    }
  });

  test("a generation submitted while the worker restarts waits for the new worker", async () => {
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 300, max: 300 } });
    try {
      await client.start();
      void first(client.submit(request("someone", "# boom")));
      await waitFor(() => client.state === "restarting", "the crash");
      const waiting = client.submit(request("victim", "Once upon a time"));
      assert.equal((await first(waiting))?.type, "accepted");
      const submits = worker.readLog().filter((l) => l.msg.t === "submit");
      const crashPid = submits.findLast((l) => l.msg.req?.prompt.kind === "text" && l.msg.req.prompt.text === "# boom")!.pid;
      assert.notEqual(submits.at(-1)!.pid, crashPid, "it reached the new worker");
    } finally {
      await client.stop();
    }
  });

  test("past restartWaitMs it gets engine_unavailable", async () => {
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 2000, max: 2000 }, restartWaitMs: 50 });
    try {
      await client.start();
      void first(client.submit(request("someone", "# boom")));
      await waitFor(() => client.state === "restarting", "the crash");
      const late = await first(client.submit(request("victim", "hi")));
      assert.equal(late?.type === "error" && late.error.code, "engine_unavailable");
    } finally {
      await client.stop();
    }
  });
});
