// The real `llamux serve` process and its lifecycle signals: readiness says 503
// until the model is loaded (the load is held open on a FIFO, so "before"
// is certain), a SIGTERM during the load leaves no process behind, and during a
// drain a second signal exits at once with status 1, cutting the stream the
// first signal was letting finish.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { createParser } from "eventsource-parser";
import { MODELS, REPO_ROOT, waitFor } from "../helpers/server.js";
import { groupAlive } from "../helpers/processGroup.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-signals-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Serve {
  child: ChildProcessWithoutNullStreams;
  /** stdout and stderr so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  /** The URL from the "listening" log line, logged before the model loads. */
  url(): Promise<string>;
}

/** `llamux serve` in its own process group, so the test can see (and end) the worker with it. */
function serve(args: string[]): Serve {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--threads", "2", "--data-dir", path.join(tmp, "data"), ...args], {
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, atMs: performance.now() })),
  );
  return {
    child,
    output: () => out,
    exited,
    url: async () => {
      await waitFor(() => /"msg":"listening"/.test(out), 30_000, "the listening log line");
      return (JSON.parse(out.split("\n").find((l) => l.includes('"msg":"listening"'))!) as { url: string }).url;
    },
  };
}

/** Whether a thread of `pid` is blocked opening a FIFO that has no writer (Linux: /proc/PID/task/TID/wchan). */
function blockedOnFifo(pid: number): boolean {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).some((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/wchan`, "utf8").includes("wait_for_partner"));
  } catch {
    return false;
  }
}

/** The front's child processes (the engine worker). */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function killGroup(s: Serve): void {
  if (groupAlive(s.child.pid!)) process.kill(-s.child.pid!, "SIGKILL");
}

describe("llamux serve lifecycle", () => {
  test("/ready is 503 'loading' while the model loads, /health is 200; after SIGTERM no process is left", async () => {
    const fifo = path.join(tmp, "never-loads.gguf");
    const made = spawnSync("mkfifo", [fifo]);
    assert.equal(made.status, 0, `mkfifo failed: ${made.stderr}`);
    const s = serve(["--model", fifo, "--slots", "1"]);
    try {
      const url = await s.url();
      // The worker blocks opening the FIFO, which nobody writes: the load cannot finish.
      await waitFor(() => childrenOf(s.child.pid!).some(blockedOnFifo), 60_000, "the worker to block reading the model");
      const ready = await fetch(`${url}/ready`);
      assert.equal(ready.status, 503);
      assert.deepEqual(await ready.json(), { status: "loading", models: { "never-loads": "loading" } });
      assert.equal((await fetch(`${url}/health`)).status, 200);
      const early = await fetch(`${url}/v1/models`);
      const listed = ((await early.json()) as { data: Array<{ id: string; meta: Record<string, unknown> }> }).data;
      assert.deepEqual(
        listed.map((m) => [m.id, m.meta]),
        [["never-loads", { state: "loading" }]],
        "configured, listed, not loaded: no details yet",
      );
      const asked = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "never-loads", messages: [{ role: "user", content: "x" }] }),
      });
      assert.equal(asked.status, 503);
      assert.equal(asked.headers.get("retry-after"), "1");
      const err = ((await asked.json()) as { error: { code: string; param: string; message: string } }).error;
      assert.equal(err.code, "model_not_loaded");
      assert.equal(err.param, "model");
      assert.match(err.message, /configured but not loaded yet/);
      assert.doesNotMatch(s.output(), /llamux ready/);

      s.child.kill("SIGTERM");
      const { code, signal } = await s.exited;
      assert.ok(code !== 0 || signal !== null, "a server that never became ready does not report success");
      // The orphaned worker has seen its front go and called process.exit,
      // which waits for the thread stuck opening the FIFO: give that open a
      // writer (and at once EOF) and the worker must be gone.
      try {
        fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENXIO") throw err; // no reader left: the worker is gone already
      }
      await waitFor(() => !groupAlive(s.child.pid!), 10_000, "the worker to exit with the server");
    } finally {
      killGroup(s);
    }
  });

  test("SIGTERM drains (the stream runs on, /ready says draining); a second signal exits at once with status 1, cutting it", async () => {
    const s = serve(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "16384", "--drain-timeout-ms", "600000"]);
    const streamAbort = new AbortController();
    try {
      const url = await s.url();
      await waitFor(() => /"msg":"llamux ready"/.test(s.output()), 60_000, "the ready log line");

      // 16,000 tokens: a stream far longer than this test.
      const frameTimes: number[] = [];
      let sawDone = false;
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 16_000, ignore_eos: true, stream: true }),
        signal: streamAbort.signal,
      });
      assert.equal(res.status, 200);
      const parser = createParser({
        onEvent: (e) => {
          if (e.data === "[DONE]") sawDone = true;
          frameTimes.push(performance.now());
        },
      });
      const streamEnded = (async () => {
        const decoder = new TextDecoder();
        try {
          for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
        } catch {
          // a cut connection
        }
        return performance.now();
      })();
      await waitFor(() => frameTimes.length > 0, 30_000, "the first frame");

      s.child.kill("SIGTERM");
      const termAt = performance.now();
      await waitFor(
        async () => {
          const r = await fetch(`${url}/ready`).catch(() => null);
          return r !== null && r.status === 503 && ((await r.json()) as { status: string }).status === "draining";
        },
        30_000,
        "/ready to say draining",
      );
      const framesAtTerm = frameTimes.filter((at) => at <= termAt).length;
      await waitFor(() => frameTimes.length > framesAtTerm + 5, 30_000, "the stream to run on while draining");

      let exitedEarly = false;
      void s.exited.then(() => (exitedEarly = true));
      assert.equal(exitedEarly, false, "the first signal alone does not end the process while a stream runs");
      s.child.kill("SIGINT");
      const intAt = performance.now();
      const { code, signal, atMs: exitAt } = await s.exited;
      assert.equal(signal, null);
      assert.equal(code, 1, "the second signal exits with status 1");
      assert.ok(exitAt > intAt, "the process exited after the second signal, not before");
      assert.ok((await streamEnded) > intAt, "the stream ended when the second signal cut it");
      assert.equal(sawDone, false, "the stream was cut, not finished");
      assert.match(s.output(), /"msg":"second signal: exiting now"/);
      await waitFor(() => !groupAlive(s.child.pid!), 10_000, "the worker to exit with the server");
    } finally {
      streamAbort.abort();
      killGroup(s);
    }
  });
});
