// EngineClient's tenant policies, against a fake worker that logs what it
// receives: they reach the worker before any request, also after a restart.
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { fakeWorker, waitFor } from "./helpers/fakeWorker.js";
import { EngineClient, validateTenantPolicies } from "../../../engine/client.js";
import type { EngineRequest, TenantPolicy, WorkerOptions } from "../../../engine/protocol.js";

const FAKE_WORKER = `
import fs from "node:fs";
const log = process.env.FAKE_WORKER_LOG;
process.on("message", (msg) => {
  fs.appendFileSync(log, JSON.stringify({ pid: process.pid, msg }) + "\\n");
  if (msg.t === "shutdown") process.exit(0);
  if (msg.t === "submit" && msg.req.tenant === "crash") process.exit(3);
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
const request = (tenant: string): EngineRequest => ({
  tenant,
  prompt: { kind: "text", text: "hi" },
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
const policy = (id: string, over: Partial<TenantPolicy> = {}): TenantPolicy => ({ id, weight: 1, reservedSlots: 0, maxSlots: null, ...over });

const worker = fakeWorker<{ t: string; policies?: TenantPolicy[]; req?: EngineRequest }>(FAKE_WORKER, "llamux-client-");
const readLog = () => worker.readLog();

describe("EngineClient.setTenantPolicies", () => {
  test("policies set before start reach the worker before any request, and again after a restart", async () => {
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry, restartBackoffMs: { initial: 10, max: 10 } });
    const policies = [policy("a", { weight: 2, reservedSlots: 1 }), policy("b", { maxSlots: 2 })];
    client.setTenantPolicies(policies);
    try {
      await client.start();
      client.submit(request("a"));
      await waitFor(() => readLog().some((l) => l.msg.t === "submit"), "the first submit");
      const first = readLog();
      assert.deepEqual(
        first.map((l) => l.msg.t),
        ["tenants", "submit"],
      );
      assert.deepEqual(first[0]!.msg.policies, policies);

      // A later change goes out at once.
      client.setTenantPolicies([policy("a", { weight: 3 })]);
      await waitFor(() => readLog().filter((l) => l.msg.t === "tenants").length === 2, "the update");

      // Crash the worker: the new one gets the latest policies before anything else.
      const restarted = new Promise<void>((r) => client.once("ready", () => r()));
      client.submit(request("crash"));
      await restarted;
      const pids = [...new Set(readLog().map((l) => l.pid))];
      await waitFor(() => readLog().some((l) => l.pid !== pids[0]), "the new worker's first message");
      const fresh = readLog().filter((l) => l.pid !== pids[0]);
      assert.equal(fresh[0]!.msg.t, "tenants");
      assert.deepEqual(fresh[0]!.msg.policies, [policy("a", { weight: 3 })]);
    } finally {
      await client.stop();
    }
  });

  test("invalid policies throw and leave the previous ones in force", async () => {
    fs.rmSync(worker.logFile, { force: true });
    const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry });
    try {
      await client.start();
      client.setTenantPolicies([policy("a")]);
      assert.throws(() => client.setTenantPolicies([policy("a", { weight: 0 })]), /weight must be a finite number > 0/);
      assert.throws(() => client.setTenantPolicies([policy("a", { reservedSlots: 5 })]), /reserve 5 slots, but the engine has 4/);
      await waitFor(() => readLog().length >= 1, "the valid policies");
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(
        readLog().map((l) => l.msg.policies),
        [[policy("a")]],
      );
    } finally {
      await client.stop();
    }
  });
});

describe("validateTenantPolicies", () => {
  test("accepts valid policies, copying only the known fields", () => {
    const extra = { ...policy("a", { weight: 0.5, reservedSlots: 2, maxSlots: 3 }), note: "x" } as TenantPolicy;
    assert.deepEqual(validateTenantPolicies([extra]), [policy("a", { weight: 0.5, reservedSlots: 2, maxSlots: 3 })]);
    assert.deepEqual(validateTenantPolicies([]), []);
  });

  test("refuses what the scheduler cannot honour", () => {
    const cases: Array<[TenantPolicy[], RegExp]> = [
      [[policy("")], /id must be a non-empty string/],
      [[policy("a"), policy("a")], /duplicate id/],
      [[policy("a", { weight: -1 })], /weight/],
      [[policy("a", { weight: Infinity })], /weight/],
      [[policy("a", { weight: NaN })], /weight/],
      [[policy("a", { reservedSlots: 1.5 })], /reservedSlots/],
      [[policy("a", { reservedSlots: -1 })], /reservedSlots/],
      [[policy("a", { maxSlots: 0 })], /maxSlots/],
      [[policy("a", { maxSlots: 2.5 })], /maxSlots/],
    ];
    for (const [ps, re] of cases) assert.throws(() => validateTenantPolicies(ps), re);
  });
});
