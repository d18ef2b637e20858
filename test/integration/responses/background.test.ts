// Background responses (`background: true`) with the official SDK on a real
// model: answered queued at once, polled to the end, cancelled mid-run (the
// slot freed for another tenant), streamed again from a sequence number live
// and after the end, charged and limited like a foreground request, and
// tenant-scoped. The restart case is in backgroundRestart.test.ts.
// One llama.cpp thread, one slot: the tests need a response that is surely
// still running when they act on it, and a tenant that surely waits for the slot.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse, ResponseStreamEvent } from "openai/resources/responses/responses";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";
import { apiError } from "./helpers.js";

const A_KEY = "lmx-bgAlphabgAlphabgAlphabgAlphabgAlpha0001";
const B_KEY = "lmx-bgBetabgBetabgBetabgBetabgBetabgBeta0002";

let dir: string;
let t: TestServer;
let a: OpenAI;
let b: OpenAI;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-background-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  // alpha: one request at a time, queued or running (a background response is one).
  fs.writeFileSync(
    tenantsFile,
    `tenants:\n  - id: alpha\n    limits: { maxConcurrent: 1 }\n    keys: ["${hashApiKey(A_KEY)}"]\n  - id: beta\n    keys: ["${hashApiKey(B_KEY)}"]\n`,
  );
  t = await startTestServer(
    ["--model", MODELS.stories260K, "--threads", "1", "--slots", "1", "--ctx-per-slot", "4096", "--tenants", tenantsFile, "--data-dir", path.join(dir, "data")],
    {
      apiKey: A_KEY,
    },
  );
  a = t.client;
  b = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: B_KEY, maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const greedy = { temperature: 0, seed: 7 };
/** Long enough to be running whatever the test does meanwhile; the engine is told to go on past end-of-story. */
const LONG = { max_output_tokens: 4000, ignore_eos: true } as Record<string, unknown>;

const create = (client: OpenAI, body: Record<string, unknown>) =>
  client.responses.create({ model: t.modelId, max_output_tokens: 16, ...body } as never) as Promise<OpenAIResponse>;

async function pollUntil(client: OpenAI, id: string, done: (r: OpenAIResponse) => boolean): Promise<OpenAIResponse> {
  let r = await client.responses.retrieve(id);
  const deadline = Date.now() + 60_000;
  while (!done(r)) {
    if (Date.now() > deadline) throw new Error(`response ${id} still ${r.status}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    r = await client.responses.retrieve(id);
  }
  return r;
}
const finished = (r: OpenAIResponse) => r.status !== "queued" && r.status !== "in_progress";

async function collect(stream: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const events: ResponseStreamEvent[] = [];
  for await (const e of stream) events.push(e);
  return events;
}

const deltaText = (events: readonly ResponseStreamEvent[]) => events.map((e) => (e.type === "response.output_text.delta" ? e.delta : "")).join("");

/** Tokens stored for the tenant (what its daily and lifetime budgets count). */
function storedUsage(tenant: string): number {
  return t.srv.store!.db.prepare("SELECT COALESCE(SUM(tokens), 0) FROM usage WHERE tenant_id = ?").pluck().get(tenant) as number;
}

async function engineRunning(): Promise<number> {
  return (await t.srv.engine.stats())!.running;
}

describe("background responses", () => {
  test("create answers queued at once; polled, it completes with what a foreground call produces", async () => {
    const body = { input: "Lily found a shiny stone.", max_output_tokens: 48, ...greedy };
    const foreground = await create(a, body);
    const usageBefore = storedUsage("alpha");
    const queued = await create(a, { ...body, background: true });
    assert.equal(queued.status, "queued");
    assert.equal(queued.background, true);
    assert.deepEqual(queued.output, []);
    assert.equal(queued.usage, undefined);
    const done = await pollUntil(a, queued.id, finished);
    assert.equal(done.status, foreground.status);
    assert.equal(done.output_text, foreground.output_text);
    assert.ok(done.output_text.length > 0);
    assert.deepEqual(done.usage!.output_tokens, foreground.usage!.output_tokens);
    assert.equal(done.background, true);
    assert.equal(foreground.background, false);
    // Charged as the foreground call was: its prompt and output.
    await waitFor(() => storedUsage("alpha") > usageBefore, 10_000, "the usage to be stored");
    assert.equal(storedUsage("alpha") - usageBefore, done.usage!.total_tokens);
    // In a conversation, its input and output are appended when it finishes.
    const conv = await a.conversations.create({});
    const inConv = await pollUntil(a, (await create(a, { ...body, background: true, conversation: conv.id })).id, finished);
    const items = (await a.conversations.items.list(conv.id, { order: "asc" })).data;
    assert.deepEqual(
      items.map((i) => (i as { role: string }).role),
      ["user", "assistant"],
    );
    assert.deepEqual(items[1], inConv.output[0]);
    // A stored response like any other: its input items, and a next turn reads it.
    assert.equal((await a.responses.inputItems.list(done.id)).data.length, 1);
    const next = await create(a, { input: "Then?", previous_response_id: done.id });
    assert.equal((await a.responses.inputItems.list(next.id)).data.length, 3);
  });

  test("stream: the client may leave, the response runs on; its events are streamed again after any sequence number, live and after the end", async () => {
    // Greedy, this model never ends a story on its own: the run ends at a stop
    // string taken from the middle of the same request's foreground output
    // (stop strings do not change sampling), so it completes, and runs long
    // enough after the client leaves to be resumed live.
    const body = { input: "Tom had a red kite.", max_output_tokens: 300, ...greedy };
    const baseline = (await create(a, body)).output_text;
    let at = Math.floor(baseline.length / 2);
    while (baseline.indexOf(baseline.slice(at, at + 6)) !== at) at++;
    const stop = baseline.slice(at, at + 6);
    const first: ResponseStreamEvent[] = [];
    const stream = (await a.responses.create({
      model: t.modelId,
      ...body,
      stop: [stop],
      stream: true,
      background: true,
    } as never)) as unknown as AsyncIterable<ResponseStreamEvent>;
    for await (const e of stream) {
      first.push(e);
      if (e.sequence_number >= 5) break; // the SDK closes the connection
    }
    assert.deepEqual(
      first.map((e) => e.type),
      [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
      ],
    );
    const id = (first[0] as { response: OpenAIResponse }).response.id;
    assert.equal((first[0] as { response: OpenAIResponse }).response.status, "queued");

    // Resumed while it runs (it may also have ended by now: then replayed).
    const live = await collect(await a.responses.retrieve(id, { stream: true, starting_after: 5 }));
    assert.deepEqual(
      live.map((e) => e.sequence_number),
      live.map((_, i) => 6 + i),
      "every event after 5, in order, none twice",
    );
    const last = live.at(-1)!;
    assert.equal(last.type, "response.completed", `ended with ${last.type}`);
    const final = (last as { response: OpenAIResponse }).response;

    // It ran to the end although the first client left, and the stored object is the one the stream ended with.
    const polled = await a.responses.retrieve(id);
    assert.equal(polled.status, "completed");
    assert.deepEqual({ ...polled, output_text: undefined }, { ...final, output_text: undefined });
    assert.equal(deltaText([...first, ...live]), polled.output_text);
    assert.equal(polled.output_text, baseline.slice(0, at));

    // Replayed after the end: the same events.
    assert.deepEqual(await collect(await a.responses.retrieve(id, { stream: true, starting_after: 5 })), live);
    const all = await collect(await a.responses.retrieve(id, { stream: true }));
    assert.deepEqual(all, [...first, ...live]);
    assert.deepEqual(await collect(await a.responses.retrieve(id, { stream: true, starting_after: last.sequence_number })), []);
  });

  test("cancel mid-run: cancelled, generation stopped and its slot freed for another tenant, the tenant's concurrency released; cancelling again returns it as it is", async () => {
    const bBody = { input: "The dog ran to the park.", max_output_tokens: 32, ...greedy };
    const bBaseline = await create(b, bBody);
    const decodedBefore = (await t.srv.engine.stats())!.decodedTokens;

    const usageBefore = storedUsage("alpha");
    const long = await create(a, { input: "Once upon a time", background: true, ...LONG });
    await pollUntil(a, long.id, (r) => r.status === "in_progress");
    // alpha may have one request at a time: the background one is it.
    const busy = await apiError(create(a, { input: "x" }), OpenAI.RateLimitError);
    assert.equal(busy.status, 429);
    // beta waits for the only slot, which alpha's response holds.
    const bWaiting = create(b, bBody);
    await waitFor(async () => (await t.srv.engine.stats())!.waiting === 1, 10_000, "beta's request to wait for the slot");

    // A reader following it live: it gets every event after 2, then the stream ends with the cancel.
    const following = collect(await a.responses.retrieve(long.id, { stream: true, starting_after: 2 }));

    const cancelled = { ...(await a.responses.cancel(long.id)), output_text: undefined };
    assert.equal(cancelled.status, "cancelled");
    assert.equal(cancelled.background, true);
    const followed = await following;
    assert.deepEqual(
      followed.map((e) => e.sequence_number),
      followed.map((_, i) => 3 + i),
    );
    assert.ok(followed.length > 2 && followed.every((e) => e.type !== "response.completed" && e.type !== "response.failed"));
    // beta runs now, and gets what it got alone.
    const bAfter = await bWaiting;
    assert.equal(bAfter.output_text, bBaseline.output_text);
    await waitFor(async () => (await engineRunning()) === 0, 10_000, "the engine to be idle");
    const generated = (await t.srv.engine.stats())!.decodedTokens - decodedBefore - bAfter.usage!.output_tokens;
    assert.ok(generated > 0 && generated < 4000, `alpha's response generated ${generated} tokens before the cancel took effect`);
    // alpha is charged what the engine did for it until the cancel: the prompt and the tokens generated.
    await waitFor(() => storedUsage("alpha") > usageBefore, 10_000, "the cancelled response's usage to be stored");
    const charged = storedUsage("alpha") - usageBefore;
    assert.ok(charged > generated && charged < generated + 100, `charged ${charged} for ${generated} generated tokens and a prompt`);

    const stored = await a.responses.retrieve(long.id);
    assert.deepEqual({ ...stored, output_text: undefined }, cancelled);
    assert.equal(stored.output_text, deltaText(followed), "the output it had when cancelled");
    assert.deepEqual({ ...(await a.responses.cancel(long.id)), output_text: undefined }, cancelled, "idempotent");
    // Its stream ends without a terminal event (OpenAI has no response.cancelled).
    const events = await collect(await a.responses.retrieve(long.id, { stream: true }));
    assert.ok(events.length >= 3);
    assert.ok(!events.some((e) => e.type === "response.completed" || e.type === "response.failed"));
    // Alpha's concurrency is free again.
    assert.equal((await create(a, { input: "x" })).status === "failed", false);

    // Cancelling a finished background response returns it as it is; a foreground one is refused.
    const done = await pollUntil(a, (await create(a, { input: "y", background: true })).id, finished);
    assert.deepEqual({ ...(await a.responses.cancel(done.id)), output_text: undefined }, { ...done, output_text: undefined });
    const foreground = await create(a, { input: "z" });
    const refused = await apiError(a.responses.cancel(foreground.id), OpenAI.BadRequestError);
    assert.match(refused.message, /background/);
  });

  test("deleted while it runs: the generation stops and the id is gone", async () => {
    const long = await create(a, { input: "A big ship", background: true, ...LONG });
    await pollUntil(a, long.id, (r) => r.status === "in_progress");
    // It has no output to continue from yet.
    const early = await apiError(create(a, { input: "And then?", previous_response_id: long.id }), OpenAI.BadRequestError);
    assert.equal(early.param, "previous_response_id");
    await a.responses.delete(long.id);
    await waitFor(async () => (await engineRunning()) === 0, 10_000, "the generation to stop");
    await apiError(a.responses.retrieve(long.id), OpenAI.NotFoundError);
    await apiError(a.responses.cancel(long.id), OpenAI.NotFoundError);
  });

  test("another tenant's background response is a 404 everywhere, queued, running or finished", async () => {
    const long = await create(a, { input: "Secret story", background: true, ...LONG });
    const never = `resp_${"0".repeat(48)}`;
    const same = async (call: (id: string) => Promise<unknown>) => {
      const theirs = await apiError(call(long.id), OpenAI.NotFoundError);
      const missing = await apiError(call(never), OpenAI.NotFoundError);
      assert.equal(theirs.message.replace(long.id, "ID"), missing.message.replace(never, "ID"));
    };
    await same((id) => b.responses.retrieve(id));
    await same((id) => b.responses.retrieve(id, { stream: true, starting_after: 0 }));
    await same((id) => b.responses.cancel(id));
    await same((id) => b.responses.inputItems.list(id));
    await same((id) => b.responses.delete(id));
    assert.notEqual((await a.responses.retrieve(long.id)).status, "cancelled");
    await a.responses.cancel(long.id);
    await same((id) => b.responses.cancel(id));
  });

  test("validation errors name the parameter", async () => {
    const bad = async (body: Record<string, unknown>, param: string) => {
      const err = await apiError(create(a, { input: "x", ...body }), OpenAI.BadRequestError);
      assert.equal(err.param, param, JSON.stringify(body));
    };
    await bad({ background: true, store: false }, "background");
    await bad({ background: "yes" }, "background");
    const foreground = await create(a, { input: "x" });
    const query = async (qs: string, param: string) => {
      const res = await fetch(`${t.url}/v1/responses/${foreground.id}?${qs}`, { headers: { authorization: `Bearer ${A_KEY}` } });
      assert.equal(res.status, 400, qs);
      assert.equal(((await res.json()) as { error: { param: string } }).error.param, param, qs);
    };
    await query("stream=true", "stream"); // not a background response
    await query("stream=maybe", "stream");
    await query("stream=true&starting_after=-1", "starting_after");
    await query("stream=true&starting_after=x", "starting_after");
    await query("starting_after=3", "starting_after");
  });
});
