// The FileStore and BatchStore contracts (src/files/fileStore.ts,
// src/batch/batchStore.ts), run against every implementation: SQLite
// (sqliteBatchStores.test.ts) and PostgreSQL (postgres/batchStores.test.ts).
// Files: contents back byte for byte (across PostgreSQL's chunk boundaries and
// multi-byte characters), tenant scoping, paging and purpose filter, delete.
// Batches: tenant scoping, paging, atomic updates (concurrent ones all count),
// unfinished in order, each line recorded once (two recorders at once: one
// wins), totals and results in line order over more than one page. What only
// one implementation has (PostgreSQL's leases) stays in that implementation's file.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { text } from "node:stream/consumers";
import { afterEach, beforeEach, test } from "node:test";
import type { FileStore } from "../../../src/files/fileStore.js";
import type { BatchObject, BatchStore } from "../../../src/batch/batchStore.js";

export interface BatchStores {
  files: FileStore;
  batches: BatchStore;
}

export interface BatchStoresHarness {
  /** Fresh, empty stores. */
  open(): Promise<BatchStores>;
  /** A second handle on the same data, as another replica (or a restarted process) would have. */
  reopen(): Promise<BatchStores>;
  close(stores: BatchStores): Promise<void>;
}

export function newBatch(id: string, status: BatchObject["status"] = "validating", createdAt = 1_700_000_000): BatchObject {
  return {
    id,
    object: "batch",
    endpoint: "/v1/chat/completions",
    model: null,
    errors: null,
    input_file_id: "file-x",
    completion_window: "24h",
    status,
    output_file_id: null,
    error_file_id: null,
    created_at: createdAt,
    in_progress_at: null,
    expires_at: createdAt + 86_400,
    finalizing_at: null,
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelling_at: null,
    cancelled_at: null,
    request_counts: { total: 0, completed: 0, failed: 0 },
    usage: { input_tokens: 0, input_tokens_details: { cached_tokens: 0 }, output_tokens: 0, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0 },
    metadata: null,
  };
}

const line = (n: number, ok = true) => ({
  line: n,
  ok,
  record: JSON.stringify({ custom_id: `c${n}`, ok }),
  inputTokens: n,
  cachedTokens: 1,
  outputTokens: 2 * n,
});

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const s of it) out.push(s);
  return out;
}

export function describeBatchStoresContract(name: string, harness: BatchStoresHarness): void {
  let stores: BatchStores;
  let files: FileStore;
  let batches: BatchStore;
  const others: BatchStores[] = [];
  beforeEach(async () => {
    stores = await harness.open();
    ({ files, batches } = stores);
  });
  afterEach(async () => {
    for (const o of others.splice(0)) await harness.close(o);
    await harness.close(stores);
  });
  const reopen = async () => {
    const o = await harness.reopen();
    others.push(o);
    return o;
  };
  const upload = async (tenant: string, contents: Buffer | string, filename = "in.jsonl") => {
    const tmp = path.join(files.tmpDir(), `upload-${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(tmp, contents);
    const f = await files.adopt(tenant, tmp, { filename, purpose: "batch", bytes: Buffer.byteLength(contents) });
    return { f, tmp };
  };
  const contents = async (s: FileStore, tenant: string, id: string) => {
    const stream = await s.open(tenant, id);
    assert.ok(stream, `file ${id} opens`);
    return text(stream);
  };

  test(`${name}: an adopted upload is read back byte for byte, from this handle and from another; its temp file is gone`, async () => {
    // Over two MiB, with multi-byte characters straddling every boundary a chunked store could cut at.
    const body = Array.from({ length: 30_000 }, (_, i) => JSON.stringify({ custom_id: `é-${i}-ü`, body: "x".repeat(i % 97) })).join("\n");
    const { f, tmp } = await upload("t1", body);
    assert.equal(f.object, "file");
    assert.equal(f.bytes, Buffer.byteLength(body));
    assert.equal(f.purpose, "batch");
    assert.equal(f.filename, "in.jsonl");
    assert.equal(fs.existsSync(tmp), false);
    assert.deepEqual(await files.get("t1", f.id), f);
    assert.equal(await contents(files, "t1", f.id), body);
    const other = await reopen();
    assert.deepEqual(await other.files.get("t1", f.id), f);
    assert.equal(await contents(other.files, "t1", f.id), body);
  });

  test(`${name}: write stores each line with its newline and counts the bytes; no lines is an empty file`, async () => {
    async function* lines() {
      yield '{"a":1}';
      yield "ünïcode";
    }
    const f = await files.write("t1", { filename: "out.jsonl", purpose: "batch_output" }, lines());
    assert.equal(f.bytes, Buffer.byteLength('{"a":1}\nünïcode\n'));
    assert.equal(f.purpose, "batch_output");
    assert.equal(await contents(files, "t1", f.id), '{"a":1}\nünïcode\n');
    const empty = await files.write("t1", { filename: "e.jsonl", purpose: "batch_output" }, []);
    assert.equal(empty.bytes, 0);
    assert.equal(await contents(files, "t1", empty.id), "");
  });

  test(`${name}: another tenant's file is answered as a missing one`, async () => {
    const { f } = await upload("t1", "{}\n");
    assert.equal(await files.get("t2", f.id), null);
    assert.equal(await files.open("t2", f.id), null);
    assert.equal(await files.delete("t2", f.id), false);
    assert.deepEqual(await files.list("t2", { after: null, limit: 10, order: "desc", purpose: null }), { data: [], hasMore: false });
    assert.deepEqual(await files.list("t2", { after: f.id, limit: 10, order: "desc", purpose: null }), { data: [], hasMore: false });
    assert.ok(await files.get("t1", f.id), "still there for its owner");
  });

  test(`${name}: list pages in both orders, after an id, and filters by purpose`, async () => {
    const a = (await upload("t1", "a")).f;
    const b = await files.write("t1", { filename: "b.jsonl", purpose: "batch_output" }, ["b"]);
    const c = (await upload("t1", "c")).f;
    const ids = (r: { data: Array<{ id: string }> }) => r.data.map((x) => x.id);
    assert.deepEqual(ids(await files.list("t1", { after: null, limit: 10, order: "desc", purpose: null })), [c.id, b.id, a.id]);
    assert.deepEqual(ids(await files.list("t1", { after: null, limit: 10, order: "asc", purpose: null })), [a.id, b.id, c.id]);
    const first = await files.list("t1", { after: null, limit: 2, order: "desc", purpose: null });
    assert.deepEqual([ids(first), first.hasMore], [[c.id, b.id], true]);
    const rest = await files.list("t1", { after: b.id, limit: 2, order: "desc", purpose: null });
    assert.deepEqual([ids(rest), rest.hasMore], [[a.id], false]);
    assert.deepEqual(ids(await files.list("t1", { after: a.id, limit: 10, order: "asc", purpose: null })), [b.id, c.id]);
    assert.deepEqual(ids(await files.list("t1", { after: null, limit: 10, order: "desc", purpose: "batch" })), [c.id, a.id]);
    assert.deepEqual(ids(await files.list("t1", { after: null, limit: 10, order: "desc", purpose: "batch_output" })), [b.id]);
  });

  test(`${name}: a deleted file is gone for every handle; a second delete finds nothing`, async () => {
    const { f } = await upload("t1", "x\n".repeat(1000));
    const other = await reopen();
    assert.equal(await files.delete("t1", f.id), true);
    assert.equal(await files.get("t1", f.id), null);
    assert.equal(await other.files.open("t1", f.id), null);
    assert.equal(await other.files.delete("t1", f.id), false);
  });

  test(`${name}: batches are tenant-scoped and listed newest first, paged after an id`, async () => {
    for (const id of ["batch_1", "batch_2", "batch_3"]) await batches.create("t1", newBatch(id));
    await batches.create("t2", newBatch("batch_9"));
    assert.deepEqual(await batches.get("t1", "batch_2"), newBatch("batch_2"));
    assert.equal(await batches.get("t2", "batch_2"), null);
    assert.equal(await batches.update("t2", "batch_2", (b) => ({ ...b, status: "cancelling" })), null);
    const page = await batches.list("t1", { after: null, limit: 2 });
    assert.deepEqual([page.data.map((b) => b.id), page.hasMore], [["batch_3", "batch_2"], true]);
    const rest = await batches.list("t1", { after: "batch_2", limit: 2 });
    assert.deepEqual([rest.data.map((b) => b.id), rest.hasMore], [["batch_1"], false]);
    assert.deepEqual(await batches.list("t1", { after: "batch_9", limit: 2 }), { data: [], hasMore: false });
    assert.deepEqual(
      (await batches.list("t2", { after: null, limit: 10 })).data.map((b) => b.id),
      ["batch_9"],
    );
  });

  test(`${name}: update is atomic: null leaves the batch as it is, concurrent changes from two handles all count`, async () => {
    await batches.create("t1", newBatch("batch_1", "in_progress"));
    const other = await reopen();
    assert.equal((await batches.update("t1", "batch_1", () => null))!.status, "in_progress");
    const inc = (s: BatchStore) =>
      s.update("t1", "batch_1", (b) => ({ ...b, request_counts: { ...b.request_counts, completed: b.request_counts.completed + 1 } }));
    await Promise.all(Array.from({ length: 20 }, (_, i) => inc(i % 2 ? batches : other.batches)));
    assert.equal((await other.batches.get("t1", "batch_1"))!.request_counts.completed, 20);
  });

  test(`${name}: unfinished lists the batches not in a final state, oldest first`, async () => {
    await batches.create("t1", newBatch("batch_1", "in_progress"));
    await batches.create("t2", newBatch("batch_2", "validating"));
    await batches.create("t1", newBatch("batch_3", "cancelling"));
    await batches.update("t1", "batch_1", (b) => ({ ...b, status: "completed" }));
    assert.deepEqual(
      (await batches.unfinished()).map((u) => [u.tenantId, u.batch.id]),
      [
        ["t2", "batch_2"],
        ["t1", "batch_3"],
      ],
    );
  });

  test(`${name}: a line is recorded once, whoever records it; totals and results follow the records, in line order, past one page`, async () => {
    await batches.create("t1", newBatch("batch_1", "in_progress"));
    const other = await reopen();
    assert.equal(await batches.recordLine("batch_1", line(2)), true);
    assert.equal(await other.batches.recordLine("batch_1", { ...line(2, false), record: "second" }), false);
    // Two recorders of one line at once: exactly one is told it recorded it.
    const race = await Promise.all([batches.recordLine("batch_1", line(7)), other.batches.recordLine("batch_1", line(7))]);
    assert.deepEqual(race.filter(Boolean).length, 1);
    for (let n = 1200; n >= 8; n--) if (n !== 100) await (n % 2 ? batches : other.batches).recordLine("batch_1", line(n, n % 10 !== 0));
    await batches.recordLine("batch_1", line(1, false));
    assert.equal((await other.batches.doneLines("batch_1")).size, 1 + 1 + 1 + (1200 - 8 + 1 - 1));
    assert.ok(!(await batches.doneLines("batch_1")).has(100));
    const all = [1, 2, 7, ...Array.from({ length: 1200 - 7 }, (_, i) => i + 8).filter((n) => n !== 100)];
    const okLines = all.filter((n) => n !== 1 && n % 10 !== 0);
    const failedLines = all.filter((n) => n === 1 || n % 10 === 0);
    assert.deepEqual(await batches.totals("batch_1"), {
      completed: okLines.length,
      failed: failedLines.length,
      inputTokens: all.reduce((s, n) => s + n, 0),
      cachedTokens: all.length,
      outputTokens: all.reduce((s, n) => s + 2 * n, 0),
    });
    assert.deepEqual(
      await collect(other.batches.results("batch_1", true)),
      okLines.map((n) => line(n).record),
    );
    assert.deepEqual(
      await collect(batches.results("batch_1", false)),
      failedLines.map((n) => line(n, false).record),
    );
    assert.deepEqual(await batches.totals("batch_none"), { completed: 0, failed: 0, inputTokens: 0, cachedTokens: 0, outputTokens: 0 });
  });
}
