// Stored responses and conversations outlive the process: a clean restart on
// the same --data-dir, and kill -9 of the real CLI right after a response was
// acknowledged (non-streamed: its body arrived; streamed: response.completed
// arrived). What the client was told is complete is on disk.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { createParser } from "eventsource-parser";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { MODELS, REPO_ROOT, startTestServer, waitFor } from "../helpers/server.js";
import { groupAlive } from "../helpers/processGroup.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-responses-durable-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SERVE = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "512", "--threads", "2"];

/** `llamux serve` as a child process (its own process group, so its worker dies with it). */
async function spawnServer(dataDir: string): Promise<{ child: ChildProcess; url: string; exited: Promise<NodeJS.Signals | null> }> {
  const child = spawn(process.execPath, [CLI, "serve", ...SERVE, "--port", "0", "--data-dir", dataDir], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
  try {
    await waitFor(() => /"msg":"llamux ready"/.test(out), 60_000, "the ready log line");
  } catch (err) {
    killGroup(child);
    throw new Error(`${(err as Error).message}; output: ${out}`);
  }
  const ready = JSON.parse(out.split("\n").find((l) => l.includes('"llamux ready"'))!) as { url: string };
  return { child, url: ready.url, exited };
}

function killGroup(child: ChildProcess): void {
  if (child.pid !== undefined && groupAlive(child.pid)) process.kill(-child.pid, "SIGKILL");
}

const post = (url: string, body: unknown) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("durability of stored responses and conversations", () => {
  test("a clean restart on the same --data-dir keeps responses, their input items and conversations", async () => {
    const dataDir = path.join(tmp, "restart");
    let t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    let r: OpenAIResponse;
    let conv: { id: string; object: string; created_at: number; metadata: unknown };
    let convItems: unknown[];
    let inputItems: unknown[];
    try {
      conv = await t.client.conversations.create({ metadata: { k: "v" } });
      r = await t.client.responses.create({ model: t.modelId, input: "Once upon a time", conversation: conv.id, max_output_tokens: 16 });
      convItems = (await t.client.conversations.items.list(conv.id)).data;
      inputItems = (await t.client.responses.inputItems.list(r.id)).data;
    } finally {
      await t.close();
    }
    t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    try {
      assert.deepEqual(await t.client.responses.retrieve(r.id), r);
      assert.deepEqual((await t.client.responses.inputItems.list(r.id)).data, inputItems);
      assert.deepEqual(await t.client.conversations.retrieve(conv.id), conv);
      assert.deepEqual((await t.client.conversations.items.list(conv.id)).data, convItems);
      assert.equal(convItems.length, 2);
      // And the history still works as context.
      const next = await t.client.responses.create({ model: t.modelId, input: "And then?", previous_response_id: r.id, max_output_tokens: 16 });
      assert.equal((await t.client.responses.inputItems.list(next.id)).data.length, 3);
    } finally {
      await t.close();
    }
  });

  test("kill -9 right after the response arrives, streamed or not: it is there after the restart", async () => {
    const dataDir = path.join(tmp, "kill9");

    // 1. Non-streamed: SIGKILL as soon as the body has been read.
    let s = await spawnServer(dataDir);
    let plain: OpenAIResponse;
    let conversationId: string;
    try {
      conversationId = ((await (await post(`${s.url}/v1/conversations`, {})).json()) as { id: string }).id;
      const res = await post(`${s.url}/v1/responses`, { model: "stories260K", input: "Tom had a kite.", conversation: conversationId, max_output_tokens: 16 });
      plain = (await res.json()) as OpenAIResponse;
      killGroup(s.child);
      assert.equal(res.status, 200, JSON.stringify(plain));
      assert.equal(await s.exited, "SIGKILL");
    } finally {
      killGroup(s.child);
    }

    // 2. Streamed: SIGKILL as soon as response.completed (or .incomplete) has arrived.
    s = await spawnServer(dataDir);
    const got: { streamed: OpenAIResponse | null } = { streamed: null };
    try {
      const res = await post(`${s.url}/v1/responses`, { model: "stories260K", input: "Mia found a cat.", max_output_tokens: 16, stream: true });
      const parser = createParser({
        onEvent: (e) => {
          if (e.event === "response.completed" || e.event === "response.incomplete") {
            got.streamed = (JSON.parse(e.data) as { response: OpenAIResponse }).response;
            killGroup(s.child);
          }
        },
      });
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
      } catch {
        // The connection dies with the server.
      }
      assert.ok(got.streamed, "the stream finished before the kill");
      assert.equal(await s.exited, "SIGKILL");
    } finally {
      killGroup(s.child);
    }
    await waitFor(() => !groupAlive(s.child.pid!), 5000, "the killed server's worker to be gone");

    // 3. A new server on the same data: both responses, and the conversation's items.
    const t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    try {
      assert.deepEqual(await t.client.responses.retrieve(plain.id), { ...plain, output_text: sdkOutputText(plain) });
      const streamed = got.streamed!;
      const again = await t.client.responses.retrieve(streamed.id);
      assert.deepEqual({ ...again, output_text: undefined }, { ...streamed, output_text: undefined });
      const items = (await t.client.conversations.items.list(conversationId, { order: "asc" })).data;
      assert.deepEqual(
        items.map((i) => (i as { role: string }).role),
        ["user", "assistant"],
      );
      assert.deepEqual(items[1], plain.output[0]);
    } finally {
      await t.close();
    }
  });
});

/** The SDK's output_text of a raw Response (fetch gives none). */
function sdkOutputText(r: OpenAIResponse): string {
  return r.output.flatMap((o) => (o.type === "message" ? o.content.flatMap((c) => (c.type === "output_text" ? [c.text] : [])) : [])).join("");
}
