// Background responses across two real llamux replicas (`llamux serve`,
// stories260K, one slot each) on one real PostgreSQL, with the official SDK: a
// response runs on the replica that created it (A) and is polled to the end,
// streamed from a sequence number while it runs, and cancelled, through the
// other (B): A stops generating and stores it cancelled with the output it
// had; deleted through B, A stops too. kill -9 of A mid-run: B sees A's running and queued responses failed,
// with the reason, once A's lease has expired; B's own running response and
// everything finished before are untouched.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse, ResponseStreamEvent } from "openai/resources/responses/responses";
import { REPLICA_LOST_MESSAGE } from "../../../src/openai/responses/interrupted.js";
import { OWNER_POLL_MS, SWEEP_MS } from "../../../src/openai/responses/backgroundReplicas.js";
import { DEFAULT_LEASE_MS } from "../../../src/store/postgres/backgroundStore.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { groupAlive } from "../helpers/processGroup.js";
import { killReplica, spawnReplica, stopReplica, type Replica } from "../helpers/replicas.js";
import { MODELS, waitFor } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-background-replica-tests-0123456789";
/** One slot, one thread: a long response surely holds the slot while the test acts on it. */
const serve = (dataDir: string) => ["--model", MODELS.stories260K, "--slots", "1", "--threads", "1", "--ctx-per-slot", "4096", "--data-dir", dataDir];

const greedy = { temperature: 0, seed: 7 };
/** Long enough (about 20 s on the development machine) to be running whatever the test does meanwhile. */
const LONG = { background: true, max_output_tokens: 4000, ignore_eos: true };

async function collect(stream: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const events: ResponseStreamEvent[] = [];
  for await (const e of stream) events.push(e);
  return events;
}
const deltaText = (events: readonly ResponseStreamEvent[]) => events.map((e) => (e.type === "response.output_text.delta" ? e.delta : "")).join("");
/** The output text, from the output items (the SDK adds `output_text` to some answers, not to cancel's). */
const textOf = (r: OpenAIResponse) =>
  r.output.flatMap((item) => (item.type === "message" ? item.content.map((c) => (c.type === "output_text" ? c.text : "")) : [])).join("");
const finished = (r: OpenAIResponse) => r.status !== "queued" && r.status !== "in_progress";
const withoutText = (r: OpenAIResponse) => ({ ...r, output_text: undefined });

async function pollUntil(client: OpenAI, id: string, done: (r: OpenAIResponse) => boolean, timeoutMs = 60_000): Promise<OpenAIResponse> {
  let r = await client.responses.retrieve(id);
  const deadline = Date.now() + timeoutMs;
  while (!done(r)) {
    if (Date.now() > deadline) throw new Error(`response ${id} still ${r.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
    r = await client.responses.retrieve(id);
  }
  return r;
}

/** One unlabelled-or-labelled sample of `name` from a replica's /metrics (summed over labels). */
async function metric(r: Replica, name: string): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) sum += Number(m[1]);
  return sum;
}

describe("background responses across two replicas on one PostgreSQL", { skip: postgresMissing ?? false }, () => {
  let pg: PostgresServer;
  let tmp: string;
  let a: Replica | null = null;
  let b: Replica | null = null;
  let onA: OpenAI;
  let onB: OpenAI;
  const create = (client: OpenAI, body: Record<string, unknown>) =>
    client.responses.create({ model: "stories260K", max_output_tokens: 16, ...body } as never) as Promise<OpenAIResponse>;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bg-replicas-"));
    pg = await startPostgres();
    const databaseUrl = await pg.createDatabase();
    const env = { LLAMUX_DATABASE_URL: databaseUrl, LLAMUX_ADMIN_KEY: ADMIN_KEY };
    [a, b] = await Promise.all([spawnReplica("A", serve(path.join(tmp, "a")), env), spawnReplica("B", serve(path.join(tmp, "b")), env)]);
    const admin = (path: string, body: unknown) =>
      fetch(`${a!.url}/admin${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    assert.equal((await admin("/tenants", { id: "acme" })).status, 201);
    const key = ((await (await admin("/tenants/acme/keys", { name: "ci" })).json()) as { key: string }).key;
    onA = new OpenAI({ baseURL: `${a.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
    onB = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
    await waitFor(
      async () => (await fetch(`${b!.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status === 200,
      5000,
      "the key on replica B",
    );
  });
  after(async () => {
    await stopReplica(b);
    await stopReplica(a);
    await pg?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("created on A, polled to completion on B: what a foreground call produces", async () => {
    const body = { input: "Lily found a shiny stone.", max_output_tokens: 48, ...greedy };
    const foreground = await create(onB, body);
    const queued = await create(onA, { ...body, background: true });
    assert.equal(queued.status, "queued");
    const polled = await pollUntil(onB, queued.id, finished);
    assert.equal(polled.status, foreground.status);
    assert.equal(polled.output_text, foreground.output_text);
    assert.ok(polled.output_text.length > 0);
    assert.deepEqual(withoutText(await onA.responses.retrieve(queued.id)), withoutText(polled));
  });

  test("streamed on B from a sequence number while it runs on A: every later event, in order, live, ending as A ended it", async () => {
    const queued = await create(onA, { input: "Tom had a red kite.", ...greedy, ...LONG, max_output_tokens: 800 });
    await pollUntil(onB, queued.id, (r) => r.status === "in_progress");
    const followed: ResponseStreamEvent[] = [];
    let statusAtFirstEvent = "";
    for await (const e of await onB.responses.retrieve(queued.id, { stream: true, starting_after: 2 })) {
      if (followed.length === 0) statusAtFirstEvent = (await onA.responses.retrieve(queued.id)).status!;
      followed.push(e);
    }
    assert.equal(statusAtFirstEvent, "in_progress", "B streamed it while A was running it");
    assert.deepEqual(
      followed.map((e) => e.sequence_number),
      followed.map((_, i) => 3 + i),
      "every event after 2, in order, none twice",
    );
    const last = followed.at(-1)!;
    assert.equal(last.type, "response.incomplete", `ended with ${last.type}`);
    const stored = await onB.responses.retrieve(queued.id);
    assert.deepEqual(withoutText((last as { response: OpenAIResponse }).response), withoutText(stored));
    assert.equal(deltaText(followed), stored.output_text);
    // The owner's own replay of the log is the same events.
    assert.deepEqual(await collect(await onA.responses.retrieve(queued.id, { stream: true, starting_after: 2 })), followed);
  });

  test("cancelled through B: A stops generating and frees its slot; the response is cancelled with the output it had", async () => {
    const long = await create(onA, { input: "Once upon a time", ...greedy, ...LONG });
    await pollUntil(onB, long.id, (r) => r.status === "in_progress");
    // Let it write some output first.
    assert.equal(await firstEvents(await onB.responses.retrieve(long.id, { stream: true, starting_after: 10 })), 1, "some output on A");
    assert.equal(await metric(a!, "llamux_slots_busy"), 1, "A's slot runs it");
    const cancelStarted = Date.now();
    const cancelled = await onB.responses.cancel(long.id);
    console.log(`# a cancel through B answered, stored by A, in ${Date.now() - cancelStarted} ms (A polls every ${OWNER_POLL_MS} ms)`);
    assert.equal(cancelled.status, "cancelled");
    assert.ok(textOf(cancelled).length > 0, "the output it had when cancelled (stored by A)");
    // A stopped: its slot is free and its engine takes no more steps.
    await waitFor(async () => (await metric(a!, "llamux_slots_busy")) === 0, 10_000, "A's slot to be freed");
    const steps = await metric(a!, "llamux_engine_steps_total");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await metric(a!, "llamux_engine_steps_total"), steps, "A generates nothing more");
    const stored = await onA.responses.retrieve(long.id);
    assert.deepEqual(withoutText(stored), withoutText(cancelled));
    const events = await collect(await onB.responses.retrieve(long.id, { stream: true }));
    assert.equal(deltaText(events), textOf(stored), "the stored log holds exactly that output");
    assert.ok(!events.some((e) => e.type === "response.completed" || e.type === "response.failed" || e.type === "response.incomplete"));
    assert.deepEqual(withoutText(await onB.responses.cancel(long.id)), withoutText(cancelled), "idempotent");
  });

  test("deleted through B while it runs on A: A stops generating, and the id is gone everywhere", async () => {
    const long = await create(onA, { input: "A big ship", ...greedy, ...LONG });
    await pollUntil(onB, long.id, (r) => r.status === "in_progress");
    assert.equal(await metric(a!, "llamux_slots_busy"), 1);
    await onB.responses.delete(long.id);
    await waitFor(async () => (await metric(a!, "llamux_slots_busy")) === 0, 10_000, "A's slot to be freed");
    for (const client of [onA, onB]) await assert.rejects(client.responses.retrieve(long.id), OpenAI.NotFoundError);
  });

  test("A killed -9 mid-run: its running and queued responses are failed with the reason once its lease expires, seen from B; B's own and finished ones are untouched", async () => {
    const done = await pollUntil(onB, (await create(onA, { input: "A small cat.", background: true, ...greedy })).id, finished);
    const stored = await create(onA, { input: "A stored foreground one.", ...greedy });
    const onBsOwn = await create(onB, { input: "The sun was hot.", ...greedy, ...LONG });
    const running = await create(onA, { input: "Once upon a time", ...greedy, ...LONG });
    const queued = await create(onA, { input: "Tom had a kite.", ...greedy, ...LONG });
    await pollUntil(onB, running.id, (r) => r.status === "in_progress");
    await pollUntil(onB, onBsOwn.id, (r) => r.status === "in_progress");
    assert.equal((await onB.responses.retrieve(queued.id)).status, "queued");

    killReplica(a!.child);
    assert.equal(await a!.exited, "SIGKILL");
    const killedAt = Date.now();
    const bound = DEFAULT_LEASE_MS + SWEEP_MS + 5_000;
    const failedRunning = await pollUntil(onB, running.id, finished, bound);
    const failedQueued = await pollUntil(onB, queued.id, finished, bound);
    console.log(`# A's responses failed ${Date.now() - killedAt} ms after the kill (lease ${DEFAULT_LEASE_MS} ms, sweep every ${SWEEP_MS} ms)`);
    for (const r of [failedRunning, failedQueued]) {
      assert.equal(r.status, "failed");
      assert.deepEqual(r.error, { code: "server_error", message: REPLICA_LOST_MESSAGE });
      const events = await collect(await onB.responses.retrieve(r.id, { stream: true }));
      assert.equal(events.at(-1)!.type, "response.failed");
      assert.deepEqual(
        events.map((e) => e.sequence_number),
        events.map((_, i) => i),
      );
    }
    // A live replica's response is never failed by the sweep: B's own runs on.
    const own = await onB.responses.retrieve(onBsOwn.id);
    assert.ok(own.status === "in_progress" || own.status === "incomplete", `B's own response is ${own.status}`);
    // Nothing finished before the kill is lost or changed.
    assert.deepEqual(withoutText(await onB.responses.retrieve(done.id)), withoutText(done));
    assert.deepEqual(withoutText(await onB.responses.retrieve(stored.id)), withoutText(stored));
    // B's own stops when cancelled (it is B's to stop).
    assert.ok(["cancelled", "incomplete"].includes((await onB.responses.cancel(onBsOwn.id)).status!));
    await waitFor(() => !groupAlive(a!.child.pid!), 10_000, "the killed replica's worker to be gone");
  });
});

/** 1 once a stream has given an event (and is left), 0 when it ended with none. */
async function firstEvents(stream: AsyncIterable<ResponseStreamEvent>): Promise<number> {
  for await (const _ of stream) return 1;
  return 0;
}
