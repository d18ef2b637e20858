// A background response outlives its server only as a clear outcome: after
// kill -9 of the real CLI mid-run, a new server on the same --data-dir answers
// the running and the queued response as failed, with the reason, and their
// streams replay what was stored and end with response.failed. A clean stop
// (SIGTERM's path, srv.close()) fails what still runs in the same way, with its own reason.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import type { Response as OpenAIResponse, ResponseStreamEvent } from "openai/resources/responses/responses";
import { MODELS, startTestServer, waitFor } from "../helpers/server.js";
import { groupAlive } from "../helpers/processGroup.js";
import { killReplica, spawnReplica, type Replica } from "../helpers/replicas.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-background-restart-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// One thread and one slot: the first response surely runs, the second surely waits.
const SERVE = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "4096", "--threads", "1"];
const LONG = { input: "Once upon a time", background: true, max_output_tokens: 4000, ignore_eos: true };

/** A real `llamux serve` on its own data dir, killable with -9 (helpers/replicas.ts). */
async function spawnServer(dataDir: string): Promise<Replica> {
  const server = await spawnReplica(path.basename(dataDir), [...SERVE, "--data-dir", dataDir]);
  return server;
}

const killGroup = (child: ChildProcess) => killReplica(child);

const post = async (url: string, body: unknown) =>
  (await (
    await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "stories260K", ...(body as object) }) })
  ).json()) as OpenAIResponse;
const get = async (url: string) => (await (await fetch(url)).json()) as OpenAIResponse;

async function replay(events: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const all: ResponseStreamEvent[] = [];
  for await (const e of events) all.push(e);
  return all;
}

describe("background responses across a restart", () => {
  test("kill -9 mid-run: after the restart the running and the queued response are failed, with the reason, and their streams end with response.failed", async () => {
    const dataDir = path.join(tmp, "kill9");
    const s = await spawnServer(dataDir);
    let running: OpenAIResponse;
    let queued: OpenAIResponse;
    try {
      running = await post(`${s.url}/v1/responses`, LONG);
      queued = await post(`${s.url}/v1/responses`, { ...LONG, input: "Tom had a kite." });
      assert.equal(running.status, "queued", JSON.stringify(running));
      await waitFor(async () => (await get(`${s.url}/v1/responses/${running.id}`)).status === "in_progress", 30_000, "the first response to run");
      assert.equal((await get(`${s.url}/v1/responses/${queued.id}`)).status, "queued");
      killGroup(s.child);
      assert.equal(await s.exited, "SIGKILL");
    } finally {
      killGroup(s.child);
    }
    await waitFor(() => !groupAlive(s.child.pid!), 5000, "the killed server's worker to be gone");

    const t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    try {
      for (const [r, was] of [
        [running, "in_progress"],
        [queued, "queued"],
      ] as const) {
        const after = await t.client.responses.retrieve(r.id);
        assert.equal(after.status, "failed", `the ${was} one`);
        assert.equal(after.error?.code, "server_error");
        assert.match(after.error!.message, /restarted/);
        assert.equal(after.background, true);
        const events = await replay(await t.client.responses.retrieve(r.id, { stream: true }));
        assert.deepEqual(
          events.map((e) => e.sequence_number),
          events.map((_, i) => i),
          "stored events in order, none missing",
        );
        assert.deepEqual(
          events.slice(0, 2).map((e) => e.type),
          ["response.created", "response.queued"],
        );
        if (was === "in_progress") assert.equal(events[2]!.type, "response.in_progress");
        const last = events.at(-1)!;
        assert.equal(last.type, "response.failed");
        assert.deepEqual(
          { ...(last as { response: OpenAIResponse }).response, output_text: undefined },
          { ...after, output_text: undefined },
          "the stream ends with the stored object",
        );
        // Cancelling it now returns it as it is.
        assert.equal((await t.client.responses.cancel(r.id)).status, "failed");
      }
      // The restarted server serves background responses as ever.
      const fresh = await t.client.responses.create({ model: t.modelId, input: "Lily", background: true, max_output_tokens: 16 });
      await waitFor(async () => (await t.client.responses.retrieve(fresh.id)).status === "incomplete", 30_000, "a new background response to finish");
    } finally {
      await t.close();
    }
  });

  test("a clean stop fails what still runs, saying the server shut down", async () => {
    const dataDir = path.join(tmp, "stop");
    let t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    let id: string;
    try {
      id = ((await t.client.responses.create({ model: t.modelId, ...LONG } as never)) as OpenAIResponse).id;
      await waitFor(async () => (await t.client.responses.retrieve(id)).status === "in_progress", 30_000, "the response to run");
    } finally {
      await t.close();
    }
    t = await startTestServer([...SERVE, "--data-dir", dataDir]);
    try {
      const r = await t.client.responses.retrieve(id);
      assert.equal(r.status, "failed");
      assert.match(r.error!.message, /shut down/);
      const events = await replay(await t.client.responses.retrieve(id, { stream: true }));
      assert.equal(events.at(-1)!.type, "response.failed");
    } finally {
      await t.close();
    }
  });
});
