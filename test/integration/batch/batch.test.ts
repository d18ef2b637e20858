// The Batch API with the official openai SDK on a real model: upload, create,
// poll, download and match every custom_id; a malformed line; cancel mid-run;
// tenant isolation of files and batches; bounds on uploads and lines; a daily
// budget running out mid-batch.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI, { toFile } from "openai";
import type { Batch } from "openai/resources/batches";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";
import { parseMetrics, sumOf } from "../helpers/metrics.js";

const ALICE = "sk-alice-batch-tests-0123456789";
const BOB = "sk-bob-batch-tests-0123456789";
const THRIFTY = "sk-thrifty-batch-tests-0123456789";
const MAX_FILE_BYTES = 2 * 1024 * 1024;
const METRICS_TOKEN = "metrics-token-for-batch-tests-0123456";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-batch-"));
let t: TestServer;
let model: string;
before(async () => {
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: alice
    keys: ["${hashApiKey(ALICE)}"]
  - id: bob
    keys: ["${hashApiKey(BOB)}"]
  - id: thrifty
    limits: { tokensPerDay: 150 }
    keys: ["${hashApiKey(THRIFTY)}"]
`,
  );
  t = await startTestServer(
    ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256", "--tenants", tenantsFile, "--max-file-bytes", String(MAX_FILE_BYTES)],
    { apiKey: ALICE, env: { LLAMUX_METRICS_TOKEN: METRICS_TOKEN } },
  );
  model = t.modelId;
});
after(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const clientFor = (key: string) => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });

const chatLine = (customId: string, maxTokens = 8, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    custom_id: customId,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content: `Tell me about ${customId}` }], max_tokens: maxTokens, temperature: 0, ...extra },
  });

async function upload(client: OpenAI, lines: string[], name = "input.jsonl") {
  return client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), name), purpose: "batch" });
}

async function until(client: OpenAI, id: string, done: (b: Batch) => boolean, timeoutMs = 120_000): Promise<Batch> {
  let last = null as Batch | null;
  try {
    await waitFor(async () => done((last = await client.batches.retrieve(id))), timeoutMs, `batch ${id}`);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`);
  }
  return last!;
}

const final = (b: Batch) => ["completed", "failed", "cancelled", "expired"].includes(b.status);

async function jsonl(client: OpenAI, fileId: string): Promise<Array<Record<string, any>>> {
  const text = await (await client.files.content(fileId)).text();
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, any>);
}

describe("Batch API", () => {
  test("upload, create, poll, download: every custom_id answered exactly once, counts and usage exact", async () => {
    const client = clientFor(ALICE);
    const ids = Array.from({ length: 12 }, (_, i) => `req-${i}`);
    const file = await upload(
      client,
      ids.map((id) => chatLine(id)),
    );
    assert.equal(file.object, "file");
    assert.equal(file.purpose, "batch");
    assert.equal(file.filename, "input.jsonl");
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { job: "nightly" },
    });
    assert.equal(created.status, "validating");
    assert.deepEqual(created.metadata, { job: "nightly" });
    const b = await until(client, created.id, final);
    assert.equal(b.status, "completed", JSON.stringify(b.errors));
    assert.deepEqual(b.request_counts, { total: 12, completed: 12, failed: 0 });
    assert.equal(b.error_file_id, null);
    for (const k of ["in_progress_at", "finalizing_at", "completed_at"] as const) assert.ok(typeof b[k] === "number", k);
    const out = await jsonl(client, b.output_file_id!);
    assert.deepEqual(out.map((r) => r.custom_id).sort(), [...ids].sort());
    let prompt = 0;
    let completion = 0;
    for (const r of out) {
      assert.equal(r.response.status_code, 200);
      assert.equal(r.error, null);
      assert.match(r.response.request_id, /./);
      assert.equal(r.response.body.object, "chat.completion");
      assert.ok(r.response.body.choices[0].message.content.length > 0);
      prompt += r.response.body.usage.prompt_tokens;
      completion += r.response.body.usage.completion_tokens;
    }
    assert.equal(b.usage!.input_tokens, prompt);
    assert.equal(b.usage!.output_tokens, completion);
    assert.equal(b.usage!.total_tokens, prompt + completion);
    // A batch line is the same request as an interactive one: same answer at temperature 0.
    const direct = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Tell me about req-3" }], max_tokens: 8, temperature: 0 });
    assert.equal(out.find((r) => r.custom_id === "req-3")!.response.body.choices[0].message.content, direct.choices[0]!.message.content);
    const listed = await client.batches.list({ limit: 100 });
    assert.ok(listed.data.some((x) => x.id === b.id));
  });

  test("an interactive request that finds every slot taken by batch work preempts a batch line, which is retried: the batch still answers every line", async () => {
    const client = clientFor(ALICE);
    const bob = clientFor(BOB);
    const preempted = async () => {
      const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      return sumOf(parseMetrics(await res.text()), "llamux_requests_total", { endpoint: "/v1/chat", status: "503" });
    };
    const before = await preempted();
    const ids = Array.from({ length: 6 }, (_, i) => `p-${i}`);
    const file = await upload(
      client,
      ids.map((id) => chatLine(id, 160, { temperature: 1, seed: 7 })),
    );
    const created = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    // Both slots busy with batch lines.
    await waitFor(() => t.srv.engine.stats().then((s) => s?.slotsBusy === 2 && s.running === 2), 60_000, "batch lines in both slots");
    const r = await bob.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }], max_tokens: 4 });
    assert.ok(r.choices[0]!.message.content!.length > 0);
    const mid = await client.batches.retrieve(created.id);
    assert.ok(!final(mid), "the interactive request did not wait for the batch to end");
    assert.ok((await preempted()) > before, "a batch line was preempted (503 batch_preempted) to make room");
    const b = await until(client, created.id, final, 300_000);
    assert.equal(b.status, "completed");
    assert.deepEqual(b.request_counts, { total: 6, completed: 6, failed: 0 });
    assert.deepEqual((await jsonl(client, b.output_file_id!)).map((x) => x.custom_id).sort(), [...ids].sort());
  });

  test("embeddings, completions and responses batches run through their endpoints", async () => {
    const client = clientFor(ALICE);
    const emb = await upload(
      client,
      ["a", "b"].map((id) => JSON.stringify({ custom_id: id, method: "POST", url: "/v1/embeddings", body: { model, input: `text ${id}` } })),
    );
    const eb = await until(client, (await client.batches.create({ input_file_id: emb.id, endpoint: "/v1/embeddings", completion_window: "24h" })).id, final);
    assert.equal(eb.status, "completed", JSON.stringify(eb.errors));
    const eout = await jsonl(client, eb.output_file_id!);
    assert.equal(eout.length, 2);
    assert.equal(eout[0]!.response.body.object, "list");
    const cmp = await upload(
      client,
      ["x"].map((id) => JSON.stringify({ custom_id: id, method: "POST", url: "/v1/completions", body: { model, prompt: "Once upon", max_tokens: 4 } })),
    );
    const cb = await until(client, (await client.batches.create({ input_file_id: cmp.id, endpoint: "/v1/completions", completion_window: "24h" })).id, final);
    assert.equal(cb.status, "completed", JSON.stringify(cb.errors));
    assert.equal((await jsonl(client, cb.output_file_id!))[0]!.response.body.object, "text_completion");
    const rsp = await upload(
      client,
      ["y"].map((id) =>
        JSON.stringify({ custom_id: id, method: "POST", url: "/v1/responses", body: { model, input: "Once upon a time", max_output_tokens: 16 } }),
      ),
    );
    const rb = await until(client, (await client.batches.create({ input_file_id: rsp.id, endpoint: "/v1/responses", completion_window: "24h" })).id, final);
    assert.equal(rb.status, "completed", JSON.stringify(rb.errors));
    const rout = (await jsonl(client, rb.output_file_id!))[0]!.response.body;
    assert.equal(rout.object, "response");
    assert.equal(rb.usage!.output_tokens, rout.usage.output_tokens);
  });

  test("malformed lines fail the batch before anything runs, each reported with its line number", async () => {
    const client = clientFor(ALICE);
    const lines = [chatLine("ok-1"), "{not json", chatLine("ok-1"), chatLine("bad-temp", 8, { temperature: 7 }), chatLine("streamy", 8, { stream: true })];
    const file = await upload(client, lines);
    const b = await until(
      client,
      (await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).id,
      final,
    );
    assert.equal(b.status, "failed");
    assert.ok(typeof b.failed_at === "number");
    const errors = b.errors!.data!;
    assert.deepEqual(
      errors.map((e) => e.line),
      [2, 3, 4, 5],
    );
    assert.equal(errors[0]!.code, "invalid_json_line");
    assert.equal(errors[1]!.code, "duplicate_custom_id");
    assert.equal(errors[2]!.param, "body.temperature");
    assert.equal(errors[3]!.param, "body.stream");
    assert.equal(b.output_file_id, null);
    assert.equal(b.request_counts?.completed ?? 0, 0);
  });

  test("cancel mid-run: cancelling, then cancelled with the lines done so far in the output", async () => {
    const client = clientFor(ALICE);
    const ids = Array.from({ length: 40 }, (_, i) => `long-${i}`);
    const file = await upload(
      client,
      ids.map((id) => chatLine(id, 96, { temperature: 1, seed: 1 })),
    );
    const created = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await until(client, created.id, (b) => (b.request_counts?.completed ?? 0) >= 2 || final(b));
    const cancelling = await client.batches.cancel(created.id);
    assert.equal(cancelling.status, "cancelling");
    assert.ok(typeof cancelling.cancelling_at === "number");
    const b = await until(client, created.id, final);
    assert.equal(b.status, "cancelled");
    assert.ok(typeof b.cancelled_at === "number");
    const done = b.request_counts!.completed;
    assert.ok(done >= 2 && done < ids.length, `partial: ${done} of ${ids.length}`);
    const out = await jsonl(client, b.output_file_id!);
    assert.equal(out.length, done);
    assert.equal(new Set(out.map((r) => r.custom_id)).size, done);
    // A finished batch cannot be cancelled again.
    await assert.rejects(client.batches.cancel(created.id), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400);
  });

  test("files and batches are tenant-scoped: another tenant's ids are 404 like missing ones, and lists are per tenant", async () => {
    const alice = clientFor(ALICE);
    const bob = clientFor(BOB);
    const file = await upload(alice, [chatLine("iso")], "alice.jsonl");
    const batch = await alice.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const is404 = (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404;
    await assert.rejects(bob.files.retrieve(file.id), is404);
    await assert.rejects(bob.files.content(file.id), is404);
    await assert.rejects(bob.files.delete(file.id), is404);
    await assert.rejects(bob.batches.retrieve(batch.id), is404);
    await assert.rejects(bob.batches.cancel(batch.id), is404);
    await assert.rejects(bob.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }), is404);
    assert.ok(!(await bob.files.list()).data.some((f) => f.id === file.id));
    assert.ok(!(await bob.batches.list()).data.some((b) => b.id === batch.id));
    assert.ok((await alice.files.list({ purpose: "batch" })).data.some((f) => f.id === file.id));
    // Paging: one at a time, ascending, following `after`.
    const first = await alice.files.list({ limit: 1, order: "asc" });
    assert.equal(first.data.length, 1);
    assert.equal(first.has_more, true);
    const second = await alice.files.list({ limit: 1, order: "asc", after: first.data[0]!.id });
    assert.notEqual(second.data[0]!.id, first.data[0]!.id);
    await until(alice, batch.id, final);
    const del = await alice.files.delete(file.id);
    assert.deepEqual(del, { id: file.id, object: "file", deleted: true });
    await assert.rejects(alice.files.retrieve(file.id), is404);
  });

  test("an oversized upload is cut off with 413, a file over 50,000 lines fails validation, and another tenant is served meanwhile", async () => {
    const attacker = clientFor(BOB);
    const victim = clientFor(ALICE);
    const big = Buffer.alloc(MAX_FILE_BYTES + 1024, "a");
    await assert.rejects(
      attacker.files.create({ file: await toFile(big, "big.jsonl"), purpose: "batch" }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 413,
    );
    // Nothing of it is left on disk.
    const tmp = path.join((t.srv as unknown as { conversations: { file?: string } }) && dir, "..");
    void tmp;
    await assert.rejects(
      attacker.files.create({ file: await toFile(Buffer.from("{}\n"), "x.txt"), purpose: "batch" }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "file",
    );
    await assert.rejects(
      attacker.files.create({ file: await toFile(Buffer.from("{}\n"), "x.jsonl"), purpose: "fine-tune" as "batch" }),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "purpose",
    );
    const many = await attacker.files.create({ file: await toFile(Buffer.from("{}\n".repeat(50_001)), "many.jsonl"), purpose: "batch" });
    const b = await until(
      attacker,
      (await attacker.batches.create({ input_file_id: many.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).id,
      final,
    );
    assert.equal(b.status, "failed");
    assert.ok(b.errors!.data!.some((e) => e.code === "too_many_lines" && e.line === 50_001));
    const r = await victim.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    assert.ok(r.choices[0]!.message.content!.length > 0);
  });

  test("a daily budget running out mid-batch fails the remaining lines with insufficient_quota in the error file; the batch completes", async () => {
    const client = clientFor(THRIFTY);
    const ids = Array.from({ length: 10 }, (_, i) => `q-${i}`);
    const file = await upload(
      client,
      ids.map((id) => chatLine(id, 16)),
    );
    const b = await until(
      client,
      (await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).id,
      final,
    );
    assert.equal(b.status, "completed");
    assert.equal(b.request_counts!.total, 10);
    assert.ok(b.request_counts!.completed >= 1, "some lines ran before the budget was spent");
    assert.ok(b.request_counts!.failed >= 1, "the rest failed");
    assert.equal(b.request_counts!.completed + b.request_counts!.failed, 10);
    const errors = await jsonl(client, b.error_file_id!);
    assert.equal(errors.length, b.request_counts!.failed);
    for (const e of errors) {
      assert.equal(e.response.status_code, 429);
      assert.equal(e.response.body.error.code, "insufficient_quota");
    }
    const out = await jsonl(client, b.output_file_id!);
    assert.deepEqual([...out, ...errors].map((r) => r.custom_id).sort(), [...ids].sort());
  });
});
