// EngineClient after worker crashes, against a fake worker that dies on a
// prompt starting with '#': the tenant whose request it was reading is
// quarantined after two crashes, others are not, generations submitted while
// the worker restarts wait for it instead of failing, and innocent requests
// with no output yet are sent again to the new worker.
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
  // A request sent for the second time (a replay after a crash: same id, same prompt) finishes at once; a first one waits.
  const same = (l) => l && JSON.parse(l).msg.id === msg.id && JSON.parse(l).msg.req?.prompt.text === msg.req.prompt.text;
  const seen = fs.readFileSync(log, "utf8").split("\\n").filter(same).length;
  if (seen > 1) process.send({ t: "step", deltas: [{ id: msg.id, text: "ok", tokens: [1], finish: "stop", usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 } }] });
});
process.on("disconnect", () => process.exit(0));
process.send({ t: "ready", v: Number(process.env.FAKE_WORKER_VERSION), model: { id: "fake", slots: 4 } });
`;

const workerOptions: WorkerOptions = {
  modelPath: "/nonexistent",
  modelId: "fake",
  slots: 4,
  contextPerSlot: 256,
  threads: 1,
  gpu: "off",
  chatTemplateFile: null,
  stepTokens: 64,
  coalesceMs: 0,
};
const request = (tenant: string, text: string): EngineRequest => ({
  tenant,
  prompt: { kind: "text", text },
  maxTokens: 1,
  stop: [],
  sampling: {
    temperature: 1,
    topP: 1,
    topK: null,
    minP: null,
    seed: null,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repeatPenalty: null,
    logitBias: {},
    ignoreEos: false,
  },
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
        const victim = client.submit(request("victim", `Once upon a time, ${i}`));
        assert.equal((await first(victim))?.type, "accepted");
        const crash = await first(client.submit(request("attacker", `# ${i}`)));
        assert.equal(crash?.type === "error" && crash.error.code, "engine_restarted");
        // The victim's request had no output yet and the worker died reading
        // the attacker's: it is sent again to the new worker, where it ends
        // normally (its `accepted` is not repeated).
        const next = await first(victim);
        assert.equal(next?.type === "delta" && next.finish, "stop", `the victim's request is replayed, not failed: ${JSON.stringify(next)}`);
        assert.equal(await victim.usage.then((u) => u?.completionTokens), 1);
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

  test("a request with output, or one replayed once already, fails with the crash; only the innocent are replayed", async () => {
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 10, max: 10 } });
    try {
      await client.start();
      const streaming = client.submit(request("victim", "stream"));
      assert.equal((await first(streaming))?.type, "accepted");
      // No "sent" request at the crash: the worker died in a step, so the ones
      // without output are the suspects, and none is replayed.
      const ac = new AbortController();
      const suspect = client.submit(request("victim", "suspect"), ac.signal);
      assert.equal((await first(suspect))?.type, "accepted");
      process.kill(client.pid!, "SIGKILL");
      const [a, b] = [await first(streaming), await first(suspect)];
      assert.equal(a?.type === "error" && a.error.code, "engine_restarted");
      assert.equal(b?.type === "error" && b.error.code, "engine_restarted");
      await waitFor(() => client.ready, "the restart");
      // A client that leaves while its replay waits is not sent again.
      const leaving = client.submit(request("victim", "leaving"), ac.signal);
      assert.equal((await first(leaving))?.type, "accepted");
      void first(client.submit(request("attacker", "# boom")));
      ac.abort();
      await waitFor(() => client.ready && client.state === "ready", "the second restart");
      await new Promise((r) => setTimeout(r, 50));
      const leavingSubmits = worker.readLog().filter((l) => l.msg.t === "submit" && l.msg.req?.prompt.kind === "text" && l.msg.req.prompt.text === "leaving");
      assert.equal(leavingSubmits.length, 1, "an aborted request is not replayed");
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
