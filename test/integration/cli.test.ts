// The real `llamux` binary as a child process: help, configuration errors, the
// hf: offline error, start-up, and a clean SIGTERM that leaves no process behind.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { MODELS, REPO_ROOT, waitFor } from "./helpers/server.js";
import { groupAlive } from "./helpers/processGroup.js";
import { ENGINE_ENV } from "../../engine/processSettings.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-cli-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env }, timeout: 60_000 });

describe("llamux CLI", () => {
  test("serve --help lists every option with its environment variable", () => {
    const r = run(["serve", "--help"]);
    assert.equal(r.status, 0);
    for (const flag of ["--model", "--host", "--port", "--slots", "--ctx-per-slot", "--threads", "--gpu", "--alias", "--chat-template"]) {
      assert.ok(r.stdout.includes(flag), `help lacks ${flag}`);
    }
    assert.match(r.stdout, /LLAMUX_SLOTS/);
  });

  test("bad configuration fails with one clear line", () => {
    const bad = run(["serve", "--slots", "many"]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /invalid value for --slots/);
    const unknown = run(["serve", "--sloths", "2"]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /sloths/);
    const fromEnv = run(["serve"], { LLAMUX_GPU: "quantum" });
    assert.match(fromEnv.stderr, /LLAMUX_GPU/);
    const missing = run(["serve", "--model", path.join(tmp, "nope.gguf")]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /model not found/);
  });

  test("an hf: model offline fails fast, naming the alternatives", () => {
    const r = run(["serve", "--model", "hf:someone/some-model-GGUF:Q4_K_M", "--cache-dir", path.join(tmp, "hf")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot fetch hf:someone\/some-model-GGUF:Q4_K_M/);
    assert.match(r.stderr, /make-model/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  });

  test("bench ceiling measures in a child run like the engine worker, the caller's environment winning", () => {
    // The caller's environment without any of the worker's settings, so only the defaults apply.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !(k in ENGINE_ENV)));
    for (const [given, expected] of [
      [undefined, "1"],
      ["2", "2"],
    ] as const) {
      const json = path.join(tmp, `ceiling-${expected}.json`);
      const args = [
        "bench",
        "ceiling",
        "--model",
        MODELS.stories260K,
        "--concurrency",
        "1",
        "--requests",
        "1",
        "--prompt-tokens",
        "8",
        "--max-tokens",
        "4",
        "--threads",
        "1",
        "--gpu",
        "off",
        "--json",
        json,
      ];
      const r = spawnSync(process.execPath, [CLI, ...args], {
        encoding: "utf8",
        env: given === undefined ? env : { ...env, UV_THREADPOOL_SIZE: given },
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      // One measurement, not one per process.
      assert.equal(r.stderr.match(/^ceiling c=1:/gm)?.length, 1, r.stderr);
      const report = JSON.parse(fs.readFileSync(json, "utf8")) as {
        process: { env: Record<string, string | null>; execArgv: string[] };
        levels: Array<{ outputTokens: number }>;
      };
      assert.deepEqual(report.process.env, { ...ENGINE_ENV, UV_THREADPOOL_SIZE: expected });
      assert.ok(report.process.execArgv.includes("--max-semi-space-size=1"), report.process.execArgv.join(" "));
      assert.equal(report.levels[0]!.outputTokens, 4);
    }
  });

  test("serve starts, answers, and exits 0 on SIGTERM with its worker gone", async () => {
    const configFile = path.join(tmp, "llamux.yaml");
    fs.writeFileSync(configFile, `model: ${MODELS.stories260K}\nslots: 2\nctx-per-slot: 256\nthreads: 2\nport: 0\ndata-dir: ${path.join(tmp, "data")}\n`);
    const child = spawn(process.execPath, [CLI, "serve", "--config", configFile], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      await waitFor(() => /"msg":"llamux ready"/.test(out), 30_000, "the ready log line");
      const ready = JSON.parse(out.split("\n").find((l) => l.includes('"llamux ready"'))!) as { url: string };
      const res = await fetch(`${ready.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", prompt: "Once upon a time", max_tokens: 3 }),
      });
      assert.equal(res.status, 200);
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      await waitFor(() => !groupAlive(child.pid!), 5000, "the worker to exit with the server");
    } finally {
      if (groupAlive(child.pid!)) process.kill(-child.pid!, "SIGKILL");
    }
  });
});
