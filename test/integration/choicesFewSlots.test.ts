// n > 1 choices on a server with fewer slots than choices (stories260K, 2
// slots): the members that find no slot queue for one and never wait on a
// leader that has gone; a client that leaves cancels every choice; an engine
// failure ends the stream with one error frame and [DONE].
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import { assertMatchesSpec } from "../helpers/openapi.js";
import { MODELS, postSse, startTestServer, waitFor, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "2048"]);
});
after(async () => {
  await t?.close();
});

const user = (content: string): OpenAI.ChatCompletionMessageParam[] => [{ role: "user", content }];
const idle = async (): Promise<boolean> => {
  const s = await t.srv.engine.stats();
  return s !== null && s.running === 0 && s.waiting === 0;
};

describe("n greater than the slot count", () => {
  test("n=5 on 2 slots completes, every choice the lone request seeded s+j", async () => {
    const body = { model: t.modelId, messages: user("A big brown bear"), n: 5, seed: 90, temperature: 1, max_tokens: 10, ignore_eos: true };
    const r = await t.client.chat.completions.create(body as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assertMatchesSpec("CreateChatCompletionResponse", r);
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1, 2, 3, 4],
    );
    assert.ok(r.choices.every((c) => c.finish_reason === "length"));
    assert.equal(r.usage!.completion_tokens, 5 * 10);
    for (const j of [0, 1, 2, 3, 4]) {
      const solo = await t.client.chat.completions.create({ ...body, n: 1, seed: body.seed + j } as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
      assert.equal(r.choices[j]!.message.content, solo.choices[0]!.message.content, `choice ${j} vs seed s+${j}`);
    }
    assert.ok(await idle());
  });

  test("streaming n=5 on 2 slots: every choice streams and finishes once", async () => {
    const sse = await postSse(`${t.url}/v1/chat/completions`, {
      model: t.modelId,
      messages: user("The sun"),
      n: 5,
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(sse.frames.at(-1), "[DONE]");
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    for (const [i, c] of chunks.entries()) assertMatchesSpec("CreateChatCompletionStreamResponse", c, `chunk ${i}`);
    for (const index of [0, 1, 2, 3, 4]) {
      assert.equal(chunks.filter((c) => c.choices[0]?.index === index && c.choices[0].finish_reason !== null).length, 1, `choice ${index}`);
    }
    assert.deepEqual(chunks.at(-1).choices, []);
  });
});

describe("ending early", () => {
  test("a client that leaves mid-stream cancels every choice, queued ones included", async () => {
    const decodedBefore = (await t.srv.engine.stats())!.decodedTokens;
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, messages: user("go"), n: 4, max_tokens: 2000, ignore_eos: true, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await waitFor(async () => (await t.srv.engine.stats())?.running === 2, 5000, "two choices to run, two to wait");
    ac.abort();
    await reader.read().catch(() => undefined);
    await waitFor(idle, 2000, "every choice to leave the engine");
    const stats = (await t.srv.engine.stats())!;
    assert.equal(stats.slotsBusy, 0);
    assert.ok(stats.decodedTokens - decodedBefore < 2 * 2000, `generation should have stopped early: ${stats.decodedTokens - decodedBefore} tokens`);
  });

  test("an engine failure mid-stream ends it with one error frame, then [DONE]", async () => {
    const pending = postSse(`${t.url}/v1/chat/completions`, { model: t.modelId, messages: user("go"), n: 3, max_tokens: 2000, ignore_eos: true, stream: true });
    await waitFor(async () => (await t.srv.engine.stats())?.running === 2, 5000, "the choices to run");
    process.kill(t.srv.engine.pid!, "SIGKILL");
    const sse = await pending;
    assert.equal(sse.status, 200);
    assert.equal(sse.frames.at(-1), "[DONE]");
    const frames = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    const errors = frames.filter((f) => "error" in f);
    assert.equal(errors.length, 1, "one error frame");
    assert.equal(frames.at(-1), errors[0], "nothing after the error frame");
    assertMatchesSpec("ErrorResponse", errors[0]);
    assert.equal(errors[0].error.code, "engine_restarted");
    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 200, 30_000, "the engine to come back");
    const r = await t.client.chat.completions.create({ model: t.modelId, messages: user("again"), n: 2, max_tokens: 3 });
    assert.equal(r.choices.length, 2);
  });
});
