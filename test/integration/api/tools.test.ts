// Tool calling on the real server, through the official openai client, with a
// model that was never tuned for tools (stories260K): with tool_choice
// "required" or a named function the output grammar makes it call a declared
// function with arguments valid against that function's schema. Every body and
// chunk is also checked against OpenAI's spec.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { assertMatchesSpec } from "../../helpers/openapi.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "6", "--ctx-per-slot", "2048"]);
});
after(async () => {
  await t?.close();
});

const WEATHER_PARAMS = {
  type: "object",
  properties: { city: { type: "string", minLength: 1, maxLength: 16 }, unit: { enum: ["c", "f"] }, days: { type: "integer" } },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const ADD_PARAMS = { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"], additionalProperties: false };
const tools: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather forecast for a city", parameters: WEATHER_PARAMS } },
  { type: "function", function: { name: "add", description: "Adds two integers", parameters: ADD_PARAMS } },
];
const ajv = new Ajv2020({ strict: true, allErrors: true });
const validators: Record<string, ReturnType<typeof ajv.compile>> = { get_weather: ajv.compile(WEATHER_PARAMS), add: ajv.compile(ADD_PARAMS) };
const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What will the weather be in Paris?" }];
const MAX_TOKENS = 400;

function assertValidCall(call: { id?: string; type?: string; function?: { name?: string; arguments?: string } }, what: string): void {
  assert.match(call.id ?? "", /^call_[A-Za-z0-9]{24}$/, what);
  assert.equal(call.type, "function", what);
  const validate = validators[call.function?.name ?? ""];
  assert.ok(validate, `${what}: undeclared function ${call.function?.name}`);
  const args: unknown = JSON.parse(call.function!.arguments!);
  assert.ok(validate(args), `${what}: ${JSON.stringify(validate.errors)} in ${call.function!.arguments}`);
}

describe("forced calls", () => {
  test('tool_choice "required": one valid call per seed, finish tool_calls, content null', async () => {
    const seeds = [1, 2, 3, 4];
    const results = await Promise.all(
      seeds.map((seed) =>
        t.client.chat.completions.create({
          model: t.modelId,
          messages,
          tools,
          tool_choice: "required",
          parallel_tool_calls: false,
          seed,
          max_tokens: MAX_TOKENS,
        }),
      ),
    );
    const names = new Set<string>();
    for (const [i, r] of results.entries()) {
      assertMatchesSpec("CreateChatCompletionResponse", r, `seed ${seeds[i]}`);
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.content, null);
      assert.equal(choice.message.tool_calls?.length, 1);
      const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      assertValidCall(call, `seed ${seeds[i]}`);
      names.add(call.function.name);
    }
    assert.ok(results.every((r) => r.usage!.completion_tokens < MAX_TOKENS));
    void names; // which function a model with no notion of tools picks is its own business
  });

  test("a named function is the one called", async () => {
    for (const seed of [1, 2]) {
      const r = await t.client.chat.completions.create({
        model: t.modelId,
        messages,
        tools,
        tool_choice: { type: "function", function: { name: "add" } },
        parallel_tool_calls: false,
        seed,
        max_tokens: MAX_TOKENS,
      });
      const call = r.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      assert.equal(call.function.name, "add");
      assertValidCall(call, `seed ${seed}`);
      assert.equal(r.choices[0]!.finish_reason, "tool_calls");
    }
  });

  test("streamed: OpenAI's tool-call deltas (id, type and name first, then argument fragments) join into the same call", async () => {
    const body = { model: t.modelId, messages, tools, tool_choice: "required" as const, parallel_tool_calls: false, seed: 5, max_tokens: MAX_TOKENS };
    const plain = await t.client.chat.completions.create(body);
    const stream = await t.client.chat.completions.create({ ...body, stream: true });
    const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    let n = 0;
    for await (const chunk of stream) {
      assertMatchesSpec("CreateChatCompletionStreamResponse", chunk, `chunk ${n++}`);
      const choice = chunk.choices[0];
      assert.ok(!choice?.delta.content, "no content beside a forced call");
      deltas.push(...(choice?.delta.tool_calls ?? []));
      finish = choice?.finish_reason ?? finish;
    }
    assert.equal(finish, "tool_calls");
    const [first, ...rest] = deltas;
    assert.ok(first && rest.length > 1, "the arguments come in several fragments");
    assert.equal(first.index, 0);
    assert.equal(first.type, "function");
    assert.equal(first.function?.arguments, "");
    for (const d of rest) assert.deepEqual(Object.keys(d).sort(), ["function", "index"]);
    const call = { id: first.id, type: first.type, function: { name: first.function?.name, arguments: rest.map((d) => d.function?.arguments ?? "").join("") } };
    assertValidCall(call, "stream");
    const expected = plain.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.deepEqual(call.function, expected.function, "same seed, same call, streamed or not");
  });

  test("parallel calls (the default): every complete call is valid; only max_tokens may cut the last", async () => {
    const maxTokens = 150;
    const r = await t.client.chat.completions.create({ model: t.modelId, messages, tools, tool_choice: "required", seed: 9, max_tokens: maxTokens });
    assertMatchesSpec("CreateChatCompletionResponse", r);
    const choice = r.choices[0]!;
    const calls = choice.message.tool_calls ?? [];
    assert.ok(calls.length >= 1);
    const complete = choice.finish_reason === "tool_calls" ? calls : calls.slice(0, -1);
    if (choice.finish_reason !== "tool_calls") {
      assert.equal(choice.finish_reason, "length");
      assert.equal(r.usage!.completion_tokens, maxTokens);
    }
    for (const [i, call] of complete.entries()) assertValidCall(call, `call ${i}`);
    assert.equal(new Set(calls.map((c) => c.id)).size, calls.length, "distinct ids");
  });
});

describe("auto, none and round trips", () => {
  test("auto lists the tools in the prompt, none does not; a model that writes no <tool_call> just answers", async () => {
    const auto = await t.client.chat.completions.create({ model: t.modelId, messages, tools, max_tokens: 8, seed: 1 });
    const none = await t.client.chat.completions.create({ model: t.modelId, messages, tools, tool_choice: "none", max_tokens: 8, seed: 1 });
    const bare = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 8, seed: 1 });
    assert.ok(auto.usage!.prompt_tokens > bare.usage!.prompt_tokens + 50, `${auto.usage!.prompt_tokens} vs ${bare.usage!.prompt_tokens}`);
    assert.equal(none.usage!.prompt_tokens, bare.usage!.prompt_tokens);
    for (const r of [auto, none]) {
      assertMatchesSpec("CreateChatCompletionResponse", r);
      assert.equal(r.choices[0]!.message.tool_calls, undefined);
      assert.equal(typeof r.choices[0]!.message.content, "string");
      assert.ok(["stop", "length"].includes(r.choices[0]!.finish_reason));
    }
  });

  test("a tool result round trip: the call and its result are read into the prompt and the model goes on", async () => {
    const first = await t.client.chat.completions.create({
      model: t.modelId,
      messages,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      seed: 2,
      max_tokens: MAX_TOKENS,
    });
    const assistant = first.choices[0]!.message;
    const call = assistant.tool_calls![0]!;
    const history: OpenAI.ChatCompletionMessageParam[] = [
      ...messages,
      { role: "assistant", content: assistant.content, tool_calls: assistant.tool_calls },
      { role: "tool", tool_call_id: call.id, content: JSON.stringify({ forecast: "sunny", high: 24 }) },
    ];
    const second = await t.client.chat.completions.create({ model: t.modelId, messages: history, tools, max_tokens: 10, seed: 2 });
    assertMatchesSpec("CreateChatCompletionResponse", second);
    assert.ok(second.usage!.prompt_tokens > first.usage!.prompt_tokens + first.usage!.completion_tokens, "the call and the result are in the prompt");
    // The conversation's prefix is the previous request's prompt: the slot's cache serves it.
    assert.ok(second.usage!.prompt_tokens_details!.cached_tokens! > 0);
    const forced = await t.client.chat.completions.create({
      model: t.modelId,
      messages: history,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      seed: 3,
      max_tokens: MAX_TOKENS,
    });
    assertValidCall(forced.choices[0]!.message.tool_calls![0]!, "after a result");
  });

  test("a tool message that answers no call is a 400 naming it", async () => {
    let caught: unknown;
    try {
      await t.client.chat.completions.create({ model: t.modelId, tools, messages: [...messages, { role: "tool", tool_call_id: "call_nope", content: "x" }] });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof OpenAI.BadRequestError, String(caught));
    assert.equal(caught.param, "messages[1].tool_call_id");
  });
});
