// The engine worker's process settings: the defaults, the caller's environment
// over them, and a forked worker (a fake one that reports what it runs with)
// actually getting them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fakeWorker, waitFor } from "./helpers/fakeWorker.js";
import { EngineClient } from "../../../engine/client.js";
import { ENGINE_ENV, ENGINE_EXEC_ARGV, engineEnv, engineExecArgv } from "../../../engine/processSettings.js";
import type { WorkerOptions } from "../../../engine/protocol.js";

const FAKE_WORKER = `
import fs from "node:fs";
const keys = ${JSON.stringify(Object.keys(ENGINE_ENV))};
fs.appendFileSync(process.env.FAKE_WORKER_LOG, JSON.stringify({ pid: process.pid, msg: {
  env: Object.fromEntries(keys.map((k) => [k, process.env[k] ?? null])), execArgv: process.execArgv,
  options: JSON.parse(process.env.LLAMUX_WORKER_OPTIONS).modelId,
} }) + "\\n");
process.on("message", (msg) => { if (msg.t === "shutdown") process.exit(0); });
process.on("disconnect", () => process.exit(0));
process.send({ t: "ready", v: Number(process.env.FAKE_WORKER_VERSION), model: { id: "fake", slots: 1 } });
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

type Seen = { env: Record<string, string | null>; execArgv: string[]; options: string };
const worker = fakeWorker<Seen>(FAKE_WORKER, "llamux-settings-");

describe("engine process settings", () => {
  test("the caller's environment overrides the defaults, and extras override both", () => {
    assert.equal(ENGINE_ENV.UV_THREADPOOL_SIZE, "1");
    assert.deepEqual(engineEnv({ PATH: "/bin" }), { ...ENGINE_ENV, PATH: "/bin" });
    assert.equal(engineEnv({ UV_THREADPOOL_SIZE: "4" }).UV_THREADPOOL_SIZE, "4");
    assert.equal(engineEnv({ X: "a" }, { X: "b" }).X, "b");
    // The caller's flags come last, so V8 takes them over the engine's.
    assert.deepEqual(engineExecArgv(["--max-semi-space-size=8"]), [...ENGINE_EXEC_ARGV, "--max-semi-space-size=8"]);
  });

  test("the client forks its worker with them, under the front's own environment", async () => {
    const saved = process.env.UV_THREADPOOL_SIZE;
    try {
      for (const [front, expected] of [
        [undefined, "1"],
        ["3", "3"],
      ] as const) {
        if (front === undefined) delete process.env.UV_THREADPOOL_SIZE;
        else process.env.UV_THREADPOOL_SIZE = front;
        const before = worker.readLog().length;
        const client = new EngineClient({ worker: workerOptions, workerEntry: worker.entry });
        try {
          await client.start();
          await waitFor(() => worker.readLog().length > before, "the worker's report");
          const seen = worker.readLog().at(-1)!.msg;
          assert.equal(seen.env.UV_THREADPOOL_SIZE, expected);
          // The rest as engineEnv gives them (a variable of the test's own environment would win).
          const want = engineEnv(process.env);
          assert.deepEqual(seen.env, Object.fromEntries(Object.keys(ENGINE_ENV).map((k) => [k, want[k] ?? null])));
          for (const flag of ENGINE_EXEC_ARGV) assert.ok(seen.execArgv.includes(flag), `worker lacks ${flag}`);
          assert.equal(seen.options, "fake");
        } finally {
          await client.stop();
        }
      }
    } finally {
      if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE;
      else process.env.UV_THREADPOOL_SIZE = saved;
    }
  });
});
