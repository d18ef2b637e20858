// OpenAI's n (n > 1 choices) against the real server on stories260K: the
// prompt is computed once and its KV state copied to the other choices, each
// choice samples with its own seed (s + j), on chat and completions, streamed
// or not.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { assertMatchesSpec, COMPLETION_STREAM_CHUNK } from "../helpers/openapi.js";
import { MODELS, postSse, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "8", "--ctx-per-slot", "2048"]);
});
after(async () => {
  await t?.close();
});

const user = (content: string): OpenAI.ChatCompletionMessageParam[] => [{ role: "user", content }];
/** Usage less cached_tokens, which a repeated prompt changes. */
const withoutCached = (u: OpenAI.CompletionUsage | undefined) => ({ ...u, prompt_tokens_details: undefined });
const prefilled = async (): Promise<number> => (await t.srv.engine.stats())!.prefilledTokens;

describe("chat with n choices", () => {
  test("n=3: indexes 0..2, not all equal, the same again, and choice j is the lone request seeded s+j", async () => {
    const body = {
      model: t.modelId,
      messages: user("Once upon a time, a little fox"),
      n: 3,
      seed: 4242,
      temperature: 1,
      max_tokens: 16,
      ignore_eos: true,
    } as const;
    const r = await t.client.chat.completions.create(body as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assertMatchesSpec("CreateChatCompletionResponse", r);
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1, 2],
    );
    const texts = r.choices.map((c) => c.message.content);
    assert.ok(new Set(texts).size > 1, `the choices should differ: ${JSON.stringify(texts)}`);
    assert.equal(r.usage!.completion_tokens, 3 * 16);

    const again = await t.client.chat.completions.create(body as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.deepEqual(
      again.choices.map((c) => c.message.content),
      texts,
    );

    for (const j of [0, 1, 2]) {
      const solo = await t.client.chat.completions.create({ ...body, n: 1, seed: body.seed + j } as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
      assert.equal(solo.choices[0]!.message.content, texts[j], `choice ${j} vs seed s+${j}`);
      // The prompt is billed once, not n times.
      assert.equal(r.usage!.prompt_tokens, solo.usage!.prompt_tokens);
    }
  });

  test("the prompt is computed once: prefilled tokens grow by the prompt and one last token per other choice", async () => {
    const story =
      `Zebra ${Date.now()} said hello. ` +
      "Once upon a time there was a little girl named Lily. She loved to play in the park with her big red ball. " +
      "One day she saw a dog under a tree. The dog was sad because he was lost. Lily wanted to help him find his home. " +
      "They walked and walked until they found a small blue house.";
    const n = 4;
    const before = await prefilled();
    const r = await t.client.chat.completions.create({ model: t.modelId, messages: user(story), n, max_tokens: 4, seed: 1 });
    const grown = (await prefilled()) - before;
    assertMatchesSpec("CreateChatCompletionResponse", r);
    assert.equal(r.choices.length, n);
    const promptTokens = r.usage!.prompt_tokens;
    const cached = r.usage!.prompt_tokens_details!.cached_tokens!;
    assert.ok(promptTokens > 100 && promptTokens < 400, `a ~150-token prompt, got ${promptTokens}`);
    assert.equal(grown, promptTokens - cached + (n - 1), `prefilled ${grown} tokens for a ${promptTokens}-token prompt (${cached} cached) and ${n} choices`);

    const solo = await t.client.chat.completions.create({ model: t.modelId, messages: user(story), max_tokens: 4, seed: 1 });
    assert.equal(promptTokens, solo.usage!.prompt_tokens, "usage.prompt_tokens is the prompt's length, counted once");
  });

  test("streaming n=3: each choice's role first, one finish each, usage last, then [DONE]; the same text as non-streaming", async () => {
    const body = { model: t.modelId, messages: user("Tom had a red ball"), n: 3, seed: 77, temperature: 1, max_tokens: 12, ignore_eos: true };
    const plain = await t.client.chat.completions.create(body as never as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const sse = await postSse(`${t.url}/v1/chat/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
    assert.equal(sse.status, 200);
    assert.equal(sse.frames.at(-1), "[DONE]");
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    for (const [i, c] of chunks.entries()) assertMatchesSpec("CreateChatCompletionStreamResponse", c, `chunk ${i}`);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
    assert.equal(new Set(chunks.map((c) => c.created)).size, 1);

    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assert.deepEqual(withoutCached(usageChunk.usage), withoutCached(plain.usage));
    const withChoices = chunks.slice(0, -1);
    assert.ok(withChoices.every((c) => c.choices.length === 1 && c.usage === null));
    for (const index of [0, 1, 2]) {
      const own = withChoices.filter((c) => c.choices[0].index === index);
      assert.equal(own[0].choices[0].delta.role, "assistant", `choice ${index}: role first`);
      const finishes = own.filter((c) => c.choices[0].finish_reason !== null);
      assert.equal(finishes.length, 1, `choice ${index}: one finish chunk`);
      assert.equal(own.at(-1), finishes[0], `choice ${index}: the finish chunk is its last`);
      assert.equal(finishes[0].choices[0].finish_reason, "length");
      const text = own.map((c) => c.choices[0].delta.content ?? "").join("");
      assert.equal(text, plain.choices[index]!.message.content, `choice ${index}: streamed text`);
    }
    // The choices advance together, not one after another.
    const firstFinish = withChoices.findIndex((c) => c.choices[0].finish_reason !== null);
    const lastContentOf1 = withChoices.findLastIndex((c) => c.choices[0].index === 1 && c.choices[0].delta.content);
    const firstContentOf2 = withChoices.findIndex((c) => c.choices[0].index === 2 && c.choices[0].delta.content);
    assert.ok(firstContentOf2 < firstFinish || lastContentOf1 > firstFinish, "chunks of the choices interleave");
  });

  test("tool calls are parsed per choice, streamed or not", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: "function",
        // Arguments from a small enum keep the forced calls short on a model never tuned for tools.
        function: { name: "pick", parameters: { type: "object", properties: { unit: { enum: ["c", "f"] } }, required: ["unit"], additionalProperties: false } },
      },
    ];
    const body = {
      model: t.modelId,
      messages: user("Pick a unit"),
      tools,
      tool_choice: "required" as const,
      parallel_tool_calls: false,
      n: 3,
      seed: 5,
      max_tokens: 200,
    };
    const r = await t.client.chat.completions.create(body);
    assertMatchesSpec("CreateChatCompletionResponse", r);
    const ids = new Set<string>();
    for (const c of r.choices) {
      assert.equal(c.finish_reason, "tool_calls", `choice ${c.index}`);
      assert.equal(c.message.tool_calls?.length, 1);
      const call = c.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      assert.equal(call.function.name, "pick");
      assert.ok(["c", "f"].includes(JSON.parse(call.function.arguments).unit), call.function.arguments);
      ids.add(call.id);
    }
    assert.equal(ids.size, 3, "each choice's call has its own id");

    const sse = await postSse(`${t.url}/v1/chat/completions`, { ...body, stream: true });
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    for (const [i, c] of chunks.entries()) assertMatchesSpec("CreateChatCompletionStreamResponse", c, `chunk ${i}`);
    for (const index of [0, 1, 2]) {
      const own = chunks.filter((c) => c.choices[0].index === index);
      const args = own
        .flatMap((c) => c.choices[0].delta.tool_calls ?? [])
        .map((d: { function?: { arguments?: string } }) => d.function?.arguments ?? "")
        .join("");
      const call = r.choices[index]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      assert.equal(args, call.function.arguments, `choice ${index}: streamed arguments`);
      assert.equal(own.at(-1).choices[0].finish_reason, "tool_calls");
    }
  });

  test("n outside 1..128 is a 400 naming n", async () => {
    for (const n of [0, 129]) {
      for (const stream of [false, true]) {
        const res = await fetch(`${t.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: t.modelId, messages: user("hi"), n, max_tokens: 2, stream }),
        });
        assert.equal(res.status, 400);
        const body = (await res.json()) as { error: { param: string | null; code: string | null } };
        assertMatchesSpec("ErrorResponse", body);
        assert.deepEqual([body.error.param, body.error.code], ["n", "invalid_value"], `n=${n}`);
      }
    }
  });
});

describe("completions with n choices", () => {
  test("two prompts × n=2: four choices in OpenAI's order (prompt by prompt), each the lone request seeded s+j", async () => {
    const prompts = ["Once upon a time", "The little dog ran"];
    const body = { model: t.modelId, prompt: prompts, n: 2, max_tokens: 6, echo: true, seed: 11, temperature: 1, ignore_eos: true };
    const r = await t.client.completions.create(body as never as OpenAI.CompletionCreateParamsNonStreaming);
    assertMatchesSpec("CreateCompletionResponse", r);
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1, 2, 3],
    );
    let promptTokens = 0;
    for (const [p, prompt] of prompts.entries()) {
      for (const j of [0, 1]) {
        const choice = r.choices[p * 2 + j]!;
        assert.ok(choice.text.startsWith(prompt), `choice ${choice.index} echoes prompt ${p}: ${JSON.stringify(choice.text)}`);
        const solo = await t.client.completions.create({ ...body, prompt, n: 1, seed: body.seed + j } as never as OpenAI.CompletionCreateParamsNonStreaming);
        assert.equal(choice.text, solo.choices[0]!.text, `prompt ${p}, choice ${j} vs seed s+${j}`);
        if (j === 0) promptTokens += solo.usage!.prompt_tokens;
      }
    }
    assert.equal(r.usage!.prompt_tokens, promptTokens, "each prompt billed once");
    assert.equal(r.usage!.completion_tokens, 4 * 6);
  });

  test("streaming two prompts × n=2: every index finishes once, the usage chunk last", async () => {
    const body = { model: t.modelId, prompt: ["Once upon a time", "The little dog ran"], n: 2, max_tokens: 5, seed: 3, ignore_eos: true };
    const plain = await t.client.completions.create(body as never as OpenAI.CompletionCreateParamsNonStreaming);
    const sse = await postSse(`${t.url}/v1/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
    assert.equal(sse.frames.at(-1), "[DONE]");
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    for (const [i, c] of chunks.entries()) assertMatchesSpec(COMPLETION_STREAM_CHUNK, c, `chunk ${i}`);
    assertMatchesSpec("CreateCompletionResponse", chunks.at(-1), "usage chunk");
    assert.deepEqual(withoutCached(chunks.at(-1).usage), withoutCached(plain.usage));
    for (const index of [0, 1, 2, 3]) {
      const own = chunks.slice(0, -1).filter((c) => c.choices[0].index === index);
      assert.equal(own.filter((c) => c.choices[0].finish_reason !== null).length, 1, `index ${index}`);
      assert.equal(own.map((c) => c.choices[0].text).join(""), plain.choices[index]!.text);
    }
  });

  test("n outside 1..128 is a 400 naming n; best_of other than 1 is still refused", async () => {
    for (const n of [0, 129]) {
      await assert.rejects(t.client.completions.create({ model: t.modelId, prompt: "Once", n, max_tokens: 2 }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.param, "n");
        return true;
      });
    }
    await assert.rejects(t.client.completions.create({ model: t.modelId, prompt: "Once", best_of: 2, max_tokens: 2 }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.param, "best_of");
      assert.equal(err.code, "unsupported_parameter");
      return true;
    });
  });
});
