// Issue 19, item 9: a client that stops reading used to grow front memory
// (the engine kept generating, the output piled up in the front: three unread
// n=16 streams went from 184 to 314 MiB in 90 s). Each request's buffered
// output is now bounded; a full buffer pauses the request in the engine until
// the reader catches up. The server runs in this process, so
// process.memoryUsage() is the front's.
// One llama.cpp thread: on a machine whose cores are busy, two threads wait on
// each other's time slices (hundreds of ms a token), which these tests need not measure.
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const KEYS = {
  stalled: "lmx-stallStallStallStallStallStallStal3001",
  victim: "lmx-victimVictimVictimVictimVictimVict3002",
};

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-unread-stream-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: stalled
    keys: ["${hashApiKey(KEYS.stalled)}"]
  - id: victim
    keys: ["${hashApiKey(KEYS.victim)}"]
`,
  );
  // 16 slots for the stalled stream's choices, 2 more for the other tenant.
  t = await startTestServer([
    "--model",
    MODELS.stories260K,
    "--threads",
    "1",
    "--slots",
    "18",
    "--ctx-per-slot",
    "2048",
    "--tenants",
    tenantsFile,
    "--data-dir",
    path.join(dir, "data"),
  ]);
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Sends an n=16 streaming request on a raw socket that never reads a byte of the answer. */
function unreadStream(): net.Socket {
  const url = new URL(t.url);
  // 20 top logprobs a token make each frame about 2 KB, so the kernel's socket
  // buffers (about 4 MB on loopback) fill after a hundred-odd tokens a choice.
  const body = JSON.stringify({
    model: t.modelId,
    messages: [{ role: "user", content: "Once upon a time" }],
    n: 16,
    max_tokens: 2000,
    ignore_eos: true,
    stream: true,
    logprobs: true,
    top_logprobs: 20,
  });
  const socket = net.connect({ host: url.hostname, port: Number(url.port) });
  socket.pause(); // nothing is ever read: the kernel buffers fill, then the server's writes wait
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${KEYS.stalled}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  return socket;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

describe("a client that stops reading an n=16 stream", () => {
  test("is paused: the engine stops generating for it, front memory stays bounded, and another tenant is served", async () => {
    const victim = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: KEYS.victim, maxRetries: 0, timeout: 60_000 });
    const chat = () =>
      victim.completions.create({ model: t.modelId, prompt: "The cat", max_tokens: 32, ignore_eos: true } as never) as Promise<OpenAI.Completion>;
    await chat(); // warm
    global.gc?.();
    const baseline = process.memoryUsage();
    const baselineDecoded = (await t.srv.engine.stats())!.decodedTokens;
    const socket = unreadStream();
    try {
      // Until the stream's output fills the socket buffers and each choice's
      // front buffer (slow on a loaded machine: up to a few hundred tokens a choice).
      const deadline = Date.now() + 300_000;
      let stats = (await t.srv.engine.stats())!;
      while ((stats.paused ?? 0) < 16) {
        assert.ok(
          Date.now() < deadline,
          `the 16 choices were not paused in time (paused ${stats.paused}, running ${stats.running}, decoded ${stats.decodedTokens})`,
        );
        assert.ok(stats.running >= 16 || stats.decodedTokens - baselineDecoded < 16, `the unread choices must not end (running ${stats.running})`);
        await sleep(250);
        stats = (await t.srv.engine.stats())!;
      }
      const pausedAt = stats;
      assert.ok(pausedAt.running >= 16, `the 16 choices hold their slots (running ${pausedAt.running})`);
      assert.ok(pausedAt.decodedTokens - baselineDecoded < 16 * 2000, "they stopped before max_tokens");
      // Held for a while: nothing more is generated for it, and memory does not grow.
      await sleep(4000);
      const later = (await t.srv.engine.stats())!;
      // The kernel may still take a few more bytes off the socket, which lets
      // a choice or two resume for a token; the stream as a whole stays stopped.
      assert.ok(later.decodedTokens - pausedAt.decodedTokens < 16 * 8, `generated ${later.decodedTokens - pausedAt.decodedTokens} tokens while paused`);
      assert.ok((later.paused ?? 0) >= 12, `still paused: ${later.paused}`);
      // Another tenant is served meanwhile.
      const r = await chat();
      assert.equal(r.usage?.completion_tokens, 32);
      global.gc?.();
      const held = process.memoryUsage();
      // The bound: 16 choices × 16 KiB of buffered events, plus what sits in
      // socket buffers; 48 MiB leaves room for the allocator and GC timing.
      const grewMiB = (held.rss - baseline.rss) / MiB;
      const heapGrewMiB = (held.heapUsed - baseline.heapUsed) / MiB;
      assert.ok(grewMiB < 48, `rss grew ${grewMiB.toFixed(1)} MiB while the stream was held`);
      assert.ok(heapGrewMiB < 32, `heap grew ${heapGrewMiB.toFixed(1)} MiB while the stream was held`);
    } finally {
      socket.destroy();
    }
    // Hanging up cancels it: its slots come back.
    const deadline = Date.now() + 30_000;
    while ((await t.srv.engine.stats())!.running > 0 && Date.now() < deadline) await sleep(250);
    assert.equal((await t.srv.engine.stats())!.running, 0);
  });
});
