// A start that fails half-way gives back everything it had acquired: the ports
// (HTTP and agent), the engine worker processes and the data directory's
// database, so the same command can be run again at once.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { MODELS, startTestServer } from "./helpers/server.js";

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** This process's child processes (engine workers, JSON parse workers are threads and do not count). */
function children(): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid)], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when there is none
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-start-failure-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("a failed start", () => {
  test("a model that cannot load, after the listener, the agent and the stores are open, releases them all", async () => {
    const bad = path.join(dir, "broken.gguf");
    fs.writeFileSync(bad, Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(4096, 7)]));
    const dataDir = path.join(dir, "data");
    const [httpPort, agentPort] = [await freePort(), await freePort()];
    const env = { LLAMUX_ADMIN_KEY: "admin-key-for-the-start-failure-test" };
    const before = children();
    const common = ["--data-dir", dataDir, "--port", String(httpPort), "--agent-port", String(agentPort), "--slots", "1", "--ctx-per-slot", "256"];
    await assert.rejects(startTestServer([...common, "--model", bad], { env }));
    assert.deepEqual(children(), before, "no engine worker outlives the failed start");

    // The same ports and data directory serve at once.
    const t = await startTestServer([...common, "--model", MODELS.stories260K], { env });
    try {
      assert.equal(new URL(t.url).port, String(httpPort));
      assert.equal(t.srv.agentPort, agentPort);
      assert.equal((await fetch(`${t.url}/health`)).status, 200);
    } finally {
      await t.close();
    }
    assert.deepEqual(children(), before, "close() stops the worker too");
  });

  test("a busy agent port fails the start with a clear error and frees the HTTP port", async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    try {
      const httpPort = await freePort();
      const agentPort = (busy.address() as net.AddressInfo).port;
      const args = ["--port", String(httpPort), "--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "256"];
      await assert.rejects(startTestServer([...args, "--agent-port", String(agentPort)]), /cannot listen for agent checks/);
      const t = await startTestServer(args);
      try {
        assert.equal(new URL(t.url).port, String(httpPort));
      } finally {
        await t.close();
      }
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
  });
});
