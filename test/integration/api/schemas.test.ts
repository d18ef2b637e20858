// Every body and every stream chunk the server sends, checked with ajv against
// the component schemas of OpenAI's own spec (shared/openai-openapi/openapi.json),
// on the real server through the official openai client (which hands chunks
// over exactly as parsed from the wire) and, for the frames themselves, raw SSE.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { assertMatchesSpec, COMPLETION_STREAM_CHUNK, specValidator } from "../../helpers/openapi.js";
import { MODELS, postSse, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "256", "--alias", "story"]);
});
after(async () => {
  await t?.close();
});

const messages = [{ role: "user" as const, content: "Once upon a time" }];

test("the validators are not vacuous: a wrong shape fails", () => {
  const chat = specValidator("CreateChatCompletionResponse");
  const good = {
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model: "m",
    choices: [{ index: 0, message: { role: "assistant", content: "hi", refusal: null }, logprobs: null, finish_reason: "stop" }],
  };
  assert.equal(chat(good), true, JSON.stringify(chat.errors));
  assert.equal(chat({ ...good, object: "chat.completion.chunk" }), false);
  assert.equal(chat({ ...good, finish_reasons: "stop" }), false, "a field the spec does not have fails");
  assert.equal(chat({ ...good, usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, cached_tokens: 0 } }), false, "nested objects are closed too");
  assert.equal(chat({ ...good, choices: [{ ...good.choices[0], finish_reason: "done" }] }), false);
  assert.equal(chat({ ...good, choices: [{ ...good.choices[0], message: { role: "assistant", content: "hi" } }] }), false, "refusal is required");
  const chunk = specValidator("CreateChatCompletionStreamResponse");
  const goodChunk = { id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "x" }, finish_reason: null }] };
  assert.equal(chunk(goodChunk), true, JSON.stringify(chunk.errors));
  assert.equal(chunk({ ...goodChunk, usage: null }), true, "nullable usage (OpenAPI 3.0 `nullable`) is understood");
  assert.equal(chunk({ ...goodChunk, choices: [{ index: 0, delta: { content: 3 }, finish_reason: null }] }), false);
  assert.equal(specValidator("ErrorResponse")({ error: { message: "m", type: "t", param: null } }), false, "code is required");
  const streamChunk = specValidator(COMPLETION_STREAM_CHUNK);
  const goodText = { id: "c", object: "text_completion", created: 1, model: "m", choices: [{ index: 0, text: "x", logprobs: null, finish_reason: null }] };
  assert.equal(streamChunk(goodText), true, JSON.stringify(streamChunk.errors));
  assert.equal(streamChunk({ ...goodText, choices: [{ index: 0, text: "x", logprobs: null, finish_reason: "done" }] }), false);
  assert.equal(streamChunk({ ...goodText, usage: { prompt_tokens: "1" } }), false, "usage, when present, is still checked");
});

describe("chat completions", () => {
  test("non-streaming bodies match CreateChatCompletionResponse (finish length and stop)", async () => {
    const long = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 6, temperature: 0 });
    assertMatchesSpec("CreateChatCompletionResponse", long);
    assert.equal(long.choices[0]!.finish_reason, "length");
    const stopped = await t.client.chat.completions.create({ model: "story", messages, max_tokens: 40, temperature: 0, stop: ["e"] });
    assertMatchesSpec("CreateChatCompletionResponse", stopped);
    assert.equal(stopped.choices[0]!.finish_reason, "stop");
  });

  for (const includeUsage of [false, true]) {
    test(`every stream chunk matches CreateChatCompletionStreamResponse (include_usage ${includeUsage})`, async () => {
      const stream = await t.client.chat.completions.create({
        model: t.modelId,
        messages,
        max_tokens: 6,
        stream: true,
        stream_options: { include_usage: includeUsage },
      });
      let n = 0;
      let sawUsage = false;
      for await (const chunk of stream) {
        assertMatchesSpec("CreateChatCompletionStreamResponse", chunk, `chunk ${n}`);
        if (chunk.usage) sawUsage = true;
        n++;
      }
      assert.ok(n >= 3, `only ${n} chunks`);
      assert.equal(sawUsage, includeUsage);
    });
  }

  test("raw SSE frames: each one before [DONE] matches, and [DONE] is last", async () => {
    const sse = await postSse(`${t.url}/v1/chat/completions`, {
      model: t.modelId,
      messages,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(sse.status, 200);
    assert.equal(sse.frames.at(-1), "[DONE]");
    for (const [i, frame] of sse.frames.slice(0, -1).entries()) assertMatchesSpec("CreateChatCompletionStreamResponse", JSON.parse(frame), `frame ${i}`);
  });
});

describe("completions", () => {
  test("non-streaming bodies match CreateCompletionResponse (one prompt, several, echo)", async () => {
    const one = await t.client.completions.create({ model: t.modelId, prompt: "Once", max_tokens: 4 });
    assertMatchesSpec("CreateCompletionResponse", one);
    const many = await t.client.completions.create({ model: t.modelId, prompt: ["Once", "The dog"], max_tokens: 4 });
    assertMatchesSpec("CreateCompletionResponse", many);
    assert.equal(many.choices.length, 2);
    const echo = await t.client.completions.create({ model: t.modelId, prompt: [1, 2, 3], max_tokens: 2, echo: true });
    assertMatchesSpec("CreateCompletionResponse", echo);
  });

  for (const includeUsage of [false, true]) {
    test(`every stream chunk matches CreateCompletionResponse (include_usage ${includeUsage})`, async () => {
      const stream = await t.client.completions.create({
        model: t.modelId,
        prompt: ["Once", "Lily"],
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: includeUsage },
      });
      let n = 0;
      const finishes = new Map<number, string>();
      let usage = false;
      for await (const chunk of stream) {
        assertMatchesSpec(COMPLETION_STREAM_CHUNK, chunk, `chunk ${n}`);
        for (const c of chunk.choices) {
          assert.ok(!finishes.has(c.index), `choice ${c.index} sent a chunk after its finish`);
          if (c.finish_reason !== null) finishes.set(c.index, c.finish_reason);
        }
        if (chunk.usage) {
          // The usage chunk is the whole body's shape: no nullable fields left.
          assertMatchesSpec("CreateCompletionResponse", chunk, "usage chunk");
          usage = true;
        }
        n++;
      }
      assert.deepEqual([...finishes.keys()].sort(), [0, 1], "each choice ends with one non-null finish_reason");
      assert.equal(usage, includeUsage);
    });
  }
});

describe("models and errors", () => {
  test("GET /v1/models matches ListModelsResponse and each retrieve matches Model", async () => {
    const res = await fetch(`${t.url}/v1/models`);
    const list = (await res.json()) as { data: Array<{ id: string }> };
    assertMatchesSpec("ListModelsResponse", list);
    assert.deepEqual(list.data.map((m) => m.id).sort(), [t.modelId, "story"].sort());
    for (const m of list.data) assertMatchesSpec("Model", await t.client.models.retrieve(m.id));
  });

  test("error bodies match ErrorResponse: 400 validation, 400 invalid JSON, 404 model, 404 route", async () => {
    const post = (path: string, body: string) => fetch(`${t.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const cases: Array<[Promise<Response>, number, string]> = [
      [post("/v1/chat/completions", JSON.stringify({ model: t.modelId, messages: [], temperature: 9 })), 400, "messages"],
      [post("/v1/chat/completions", "{not json"), 400, "invalid_json"],
      [post("/v1/completions", JSON.stringify({ model: "nope", prompt: "x" })), 404, "model_not_found"],
      [fetch(`${t.url}/v1/nothing-here`), 404, "not_found"],
      [fetch(`${t.url}/v1/models/nope`), 404, "model_not_found"],
    ];
    for (const [pending, status, what] of cases) {
      const res = await pending;
      assert.equal(res.status, status, what);
      assertMatchesSpec("ErrorResponse", await res.json(), what);
    }
  });

  test("a context overflow error (raised by the engine) matches ErrorResponse, and so does its SDK view", async () => {
    let caught: unknown;
    try {
      await t.client.completions.create({ model: t.modelId, prompt: "Once", max_tokens: 10_000 });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof OpenAI.BadRequestError);
    assert.equal(caught.code, "context_length_exceeded");
    assertMatchesSpec("Error", caught.error);
  });
});
