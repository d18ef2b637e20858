// The Batch API across two real llamux replicas (`llamux serve`, stories260K,
// one slot each) on one real PostgreSQL, with the official SDK: a file
// uploaded through A is listed, retrieved and downloaded through B (and is
// another tenant's 404 there); a batch created through A (which runs it) is
// polled to the end and its output downloaded through B; a cancel through B
// reaches A's run. kill -9 of A mid-batch: once A's lease has expired, B takes
// the batch over and finishes it, computing only the lines A had not recorded
// (B's own count of generated tokens says so), and the output has every
// line exactly once with request_counts and usage exact.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI, { toFile } from "openai";
import type { Batch } from "openai/resources/batches";
import pg from "pg";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { groupAlive } from "../helpers/processGroup.js";
import { killReplica, spawnReplica, stopReplica, type Replica } from "../helpers/replicas.js";
import { MODELS, waitFor } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-batch-replica-tests-0123456789";
const serve = (dataDir: string) => ["--model", MODELS.stories260K, "--slots", "1", "--threads", "1", "--ctx-per-slot", "512", "--data-dir", dataDir];

const final = (b: Batch) => ["completed", "failed", "cancelled", "expired"].includes(b.status);
type OutputLine = { custom_id: string; response: { status_code: number; body: { usage: { prompt_tokens: number; completion_tokens: number } } } };

/** A chat line that generates exactly `tokens` tokens (ignore_eos). */
const chatLine = (id: string, tokens: number) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model: "stories260K", messages: [{ role: "user", content: `Once upon a time, ${id}` }], max_tokens: tokens, ignore_eos: true, temperature: 0 },
  });

async function until(client: OpenAI, id: string, done: (b: Batch) => boolean, timeoutMs = 180_000): Promise<Batch> {
  let b: Batch = await client.batches.retrieve(id);
  const deadline = Date.now() + timeoutMs;
  while (!done(b)) {
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${b.status} (${JSON.stringify(b.request_counts)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    b = await client.batches.retrieve(id);
  }
  return b;
}

async function jsonl(client: OpenAI, fileId: string): Promise<OutputLine[]> {
  const text = await (await client.files.content(fileId)).text();
  return text
    .split("\n")
    .filter((l) => l)
    .map((l) => JSON.parse(l) as OutputLine);
}

/** Completion tokens a replica generated, from its /metrics (summed over tenants and models). */
async function tokensGenerated(r: Replica): Promise<number> {
  const res = await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(res.status, 200);
  let sum = 0;
  for (const m of (await res.text()).matchAll(/^llamux_completion_tokens_total(?:\{[^}]*\})? (\S+)$/gm)) sum += Number(m[1]);
  return sum;
}

describe("the Batch API across two replicas on one PostgreSQL", { skip: postgresMissing ?? false }, () => {
  let pgServer: PostgresServer;
  let databaseUrl: string;
  let tmp: string;
  let a: Replica | null = null;
  let b: Replica | null = null;
  let onA: OpenAI;
  let onB: OpenAI;
  let otherOnB: OpenAI;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-batch-replicas-"));
    pgServer = await startPostgres();
    databaseUrl = await pgServer.createDatabase();
    const env = { LLAMUX_DATABASE_URL: databaseUrl, LLAMUX_ADMIN_KEY: ADMIN_KEY };
    [a, b] = await Promise.all([spawnReplica("A", serve(path.join(tmp, "a")), env), spawnReplica("B", serve(path.join(tmp, "b")), env)]);
    const admin = (p: string, body: unknown) =>
      fetch(`${a!.url}/admin${p}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const keyFor = async (tenant: string) => {
      assert.equal((await admin("/tenants", { id: tenant })).status, 201);
      return ((await (await admin(`/tenants/${tenant}/keys`, { name: "ci" })).json()) as { key: string }).key;
    };
    const key = await keyFor("acme");
    const otherKey = await keyFor("other");
    onA = new OpenAI({ baseURL: `${a.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
    onB = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
    otherOnB = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: otherKey, maxRetries: 0, timeout: 60_000 });
    await waitFor(
      async () => (await fetch(`${b!.url}/v1/models`, { headers: { authorization: `Bearer ${otherKey}` } })).status === 200,
      5000,
      "the keys on replica B",
    );
  });
  after(async () => {
    await stopReplica(b);
    await stopReplica(a);
    await pgServer?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a file uploaded through A and a batch created through A are read through B, to the output", async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `shared-${i}`);
    const contents = ids.map((id) => chatLine(id, 8)).join("\n");
    const file = await onA.files.create({ file: await toFile(Buffer.from(contents), "in.jsonl"), purpose: "batch" });
    assert.deepEqual(await onB.files.retrieve(file.id), file);
    assert.equal(await (await onB.files.content(file.id)).text(), contents);
    assert.ok((await onB.files.list()).data.some((f) => f.id === file.id));
    await assert.rejects(
      otherOnB.files.retrieve(file.id),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404,
      "another tenant's file is a missing one",
    );
    assert.ok(!(await otherOnB.files.list()).data.some((f) => f.id === file.id));

    const created = await onA.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const done = await until(onB, created.id, final);
    assert.equal(done.status, "completed");
    assert.deepEqual(done.request_counts, { total: ids.length, completed: ids.length, failed: 0 });
    assert.ok((await onB.batches.list()).data.some((x) => x.id === created.id));
    const out = await jsonl(onB, done.output_file_id!);
    assert.deepEqual(out.map((r) => r.custom_id).sort(), [...ids].sort());
    assert.equal(done.usage!.output_tokens, ids.length * 8);
    assert.deepEqual(await onA.batches.retrieve(created.id), done);
  });

  test("a cancel through B reaches the run on A: cancelled, with the lines done so far", async () => {
    // Far more work than fits in the up to 2 s the cancel takes to reach A (its next lease renewal), even on a fast machine.
    const ids = Array.from({ length: 200 }, (_, i) => `cancel-${i}`);
    const file = await onA.files.create({ file: await toFile(Buffer.from(ids.map((id) => chatLine(id, 160)).join("\n")), "in.jsonl"), purpose: "batch" });
    const created = await onA.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await until(onB, created.id, (x) => (x.request_counts?.completed ?? 0) >= 2 || final(x));
    const cancelling = await onB.batches.cancel(created.id);
    assert.equal(cancelling.status, "cancelling");
    const done = await until(onB, created.id, final);
    assert.equal(done.status, "cancelled");
    const n = done.request_counts!.completed;
    assert.ok(n >= 2 && n < ids.length, `partial: ${n} of ${ids.length}`);
    const out = await jsonl(onB, done.output_file_id!);
    assert.equal(out.length, n);
    assert.equal(new Set(out.map((r) => r.custom_id)).size, n);
    assert.equal(done.usage!.output_tokens, n * 160);
  });

  test("kill -9 of the replica running a batch: the other takes it over after the lease and finishes it, each line computed into the output once", async (t) => {
    const ids = Array.from({ length: 60 }, (_, i) => `line-${i}`);
    const tokens = 160;
    const file = await onA.files.create({ file: await toFile(Buffer.from(ids.map((id) => chatLine(id, tokens)).join("\n")), "in.jsonl"), purpose: "batch" });
    const created = await onA.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await until(onB, created.id, (x) => (x.request_counts?.completed ?? 0) >= 3 || final(x));
    const generatedBefore = await tokensGenerated(b!);
    const killedAt = Date.now();
    killReplica(a!.child);
    assert.equal(await a!.exited, "SIGKILL");
    await waitFor(() => !groupAlive(a!.child.pid!), 10_000, "the killed group to be gone");

    // What A recorded before it died: A is gone, so this no longer changes until B takes over.
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    let recordedByA: number;
    try {
      recordedByA = Number((await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM batch_lines WHERE batch_id = $1", [created.id])).rows[0]!.n);
    } finally {
      await db.end();
    }
    assert.ok(recordedByA >= 3 && recordedByA < ids.length, `killed mid-batch: ${recordedByA} of ${ids.length} recorded`);

    const done = await until(onB, created.id, final);
    assert.equal(done.status, "completed");
    const takeover = b!
      .output()
      .split("\n")
      .find((l) => l.includes("taking over a batch no live replica holds") && l.includes(created.id));
    assert.ok(takeover, "B says it took the batch over");
    t.diagnostic(
      `B took the batch over ${(JSON.parse(takeover) as { time: number }).time - killedAt} ms after the kill; A had recorded ${recordedByA} of ${ids.length} lines`,
    );
    assert.deepEqual(done.request_counts, { total: ids.length, completed: ids.length, failed: 0 });
    const out = await jsonl(onB, done.output_file_id!);
    assert.equal(out.length, ids.length, "one record per line, none twice");
    assert.deepEqual(out.map((r) => r.custom_id).sort(), [...ids].sort());
    assert.ok(out.every((r) => r.response.status_code === 200 && r.response.body.usage.completion_tokens === tokens));
    const used = out.reduce((s, r) => s + r.response.body.usage.prompt_tokens + r.response.body.usage.completion_tokens, 0);
    assert.equal(done.usage!.total_tokens, used, "usage counts each line once");
    assert.equal(done.usage!.output_tokens, ids.length * tokens);
    // B generated exactly the lines A had not recorded: none of A's again (a line cut by the kill had no record, and runs again).
    assert.equal((await tokensGenerated(b!)) - generatedBefore, (ids.length - recordedByA) * tokens);
  });
});
