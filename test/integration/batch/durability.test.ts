// A batch survives kill -9: the real CLI is killed (its whole process group,
// engine worker included) while the batch runs, restarted on the same
// --data-dir, and the batch finishes with every line in the output exactly once.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import OpenAI, { toFile } from "openai";
import type { Batch } from "openai/resources/batches";
import { MODELS, waitFor } from "../helpers/server.js";
import { groupAlive } from "../helpers/processGroup.js";
import { killReplica, spawnReplica, type Replica } from "../helpers/replicas.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-batch-durable-"));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) killGroup(c);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const SERVE = ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256", "--threads", "2"];

/** A real `llamux serve` on its own data dir, killable with -9 (helpers/replicas.ts). */
async function spawnServer(dataDir: string): Promise<Replica> {
  const server = await spawnReplica(path.basename(dataDir), [...SERVE, "--data-dir", dataDir]);
  children.push(server.child);
  return server;
}

const killGroup = (child: ChildProcess) => killReplica(child);

describe("batch durability", () => {
  test("kill -9 mid-batch, restart on the same data dir: the output has every line exactly once", async () => {
    const dataDir = path.join(tmp, "data");
    const first = await spawnServer(dataDir);
    const client1 = new OpenAI({ baseURL: `${first.url}/v1`, apiKey: "x", maxRetries: 0 });
    const ids = Array.from({ length: 24 }, (_, i) => `line-${i}`);
    const lines = ids.map((id) =>
      JSON.stringify({
        custom_id: id,
        method: "POST",
        url: "/v1/chat/completions",
        body: { model: "stories260K", messages: [{ role: "user", content: id }], max_tokens: 48, temperature: 0 },
      }),
    );
    const file = await client1.files.create({ file: await toFile(Buffer.from(lines.join("\n")), "in.jsonl"), purpose: "batch" });
    const batch = await client1.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    let seen = null as Batch | null;
    await waitFor(async () => ((seen = await client1.batches.retrieve(batch.id)).request_counts?.completed ?? 0) >= 3, 120_000, "some lines done");
    assert.ok(seen!.request_counts!.completed < ids.length, "killed mid-batch");
    process.kill(-first.child.pid!, "SIGKILL");
    assert.equal(await first.exited, "SIGKILL");
    await waitFor(() => !groupAlive(first.child.pid!), 10_000, "the killed group to be gone");

    const second = await spawnServer(dataDir);
    try {
      const client2 = new OpenAI({ baseURL: `${second.url}/v1`, apiKey: "x", maxRetries: 0 });
      let b = null as Batch | null;
      await waitFor(
        async () => ["completed", "failed", "cancelled", "expired"].includes((b = await client2.batches.retrieve(batch.id)).status),
        180_000,
        "the resumed batch to end",
      );
      assert.equal(b!.status, "completed");
      assert.deepEqual(b!.request_counts, { total: ids.length, completed: ids.length, failed: 0 });
      const text = await (await client2.files.content(b!.output_file_id!)).text();
      const out = text
        .split("\n")
        .filter((l) => l)
        .map(
          (l) =>
            JSON.parse(l) as { custom_id: string; response: { status_code: number; body: { usage: { prompt_tokens: number; completion_tokens: number } } } },
        );
      assert.equal(out.length, ids.length, "one record per line, none twice");
      assert.deepEqual(out.map((r) => r.custom_id).sort(), [...ids].sort());
      assert.ok(out.every((r) => r.response.status_code === 200));
      const used = out.reduce((n, r) => n + r.response.body.usage.prompt_tokens + r.response.body.usage.completion_tokens, 0);
      assert.equal(b!.usage!.total_tokens, used, "usage counts each line once");
    } finally {
      process.kill(-second.child.pid!, "SIGTERM");
      await second.exited;
    }
  });
});
