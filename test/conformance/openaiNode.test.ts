// openai-node (the official SDK) driving its documented flows against the real
// server: chat loops that append the returned message (plain, after a tool
// call, after .parse()), tool loops, structured output on both APIs (zod
// helpers and raw JSON schema), responses.parse, multi-turn Responses with
// previous_response_id and with returned output items sent back as input,
// streaming on both APIs, embeddings, errors and a 429.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { zodFunction, zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import type { ResponseInputItem } from "openai/resources/responses/responses";
import { z } from "zod";
import { KEYS, SLOW_RPM, startConformanceServer, type ConformanceServer } from "./helpers.js";

let s: ConformanceServer;
let client: OpenAI;
before(async () => {
  s = await startConformanceServer();
  client = new OpenAI({ baseURL: s.baseURL, apiKey: KEYS.app, maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  await s?.close();
});

const MAX_TOKENS = 200;
// Every forced call is a single one: with parallel calls allowed, a model that
// knows nothing of tools keeps writing calls until the token limit.
const Pet = z.object({ name: z.string().min(1).max(10), legs: z.enum(["two", "four"]), friendly: z.boolean() });
const petSchema = {
  type: "object",
  properties: { name: { type: "string", minLength: 1, maxLength: 10 }, friendly: { type: "boolean" } },
  required: ["name", "friendly"],
  additionalProperties: false,
};
const weatherTool = zodFunction({ name: "get_weather", description: "Weather in a city", parameters: z.object({ city: z.string().max(10) }) });

describe("openai-node: chat completions", () => {
  test("a chat loop appends the returned message and goes on", async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: "user", content: "Once upon a time" }];
    const first = await client.chat.completions.create({ model: s.modelId, messages, max_tokens: 8 });
    messages.push(first.choices[0]!.message, { role: "user", content: "And then?" });
    const second = await client.chat.completions.create({ model: s.modelId, messages, max_tokens: 8 });
    assert.equal(second.choices[0]!.message.role, "assistant");
    assert.ok(second.usage!.prompt_tokens > first.usage!.prompt_tokens);
  });

  test("a tool loop: the forced call, the returned message appended with the tool's result, then an answer", async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Paris?" }];
    const first = await client.chat.completions.create({
      model: s.modelId,
      messages,
      tools: [weatherTool],
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
    });
    const message = first.choices[0]!.message;
    assert.equal(first.choices[0]!.finish_reason, "tool_calls");
    const call = message.tool_calls![0]!;
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.equal(typeof JSON.parse(call.function.arguments).city, "string");
    messages.push(message, { role: "tool", tool_call_id: call.id, content: "sunny" });
    const second = await client.chat.completions.create({ model: s.modelId, messages, tools: [weatherTool], max_tokens: 8 });
    assert.equal(second.choices[0]!.message.role, "assistant");
  });

  test("chat.completions.parse with a zod schema, and the parsed message appended to the next request", async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: "user", content: "Tell me about a pet." }];
    const first = await client.chat.completions.parse({ model: s.modelId, messages, response_format: zodResponseFormat(Pet, "pet"), max_tokens: MAX_TOKENS });
    const message = first.choices[0]!.message;
    assert.equal(first.choices[0]!.finish_reason, "stop");
    assert.ok(message.parsed, message.content ?? "no content");
    Pet.parse(message.parsed);
    // What the SDK's users do: the parsed message (with `parsed` and `refusal`) goes straight back.
    messages.push(message as ChatCompletionMessageParam, { role: "user", content: "Another one." });
    const second = await client.chat.completions.parse({ model: s.modelId, messages, response_format: zodResponseFormat(Pet, "pet"), max_tokens: MAX_TOKENS });
    Pet.parse(second.choices[0]!.message.parsed);
  });

  test("a raw json_schema response_format gives JSON that validates", async () => {
    const r = await client.chat.completions.create({
      model: s.modelId,
      messages: [{ role: "user", content: "A pet?" }],
      response_format: { type: "json_schema", json_schema: { name: "pet", schema: petSchema, strict: true } },
      max_tokens: MAX_TOKENS,
    });
    const value = JSON.parse(r.choices[0]!.message.content!);
    assert.deepEqual(Object.keys(value).sort(), ["friendly", "name"]);
  });

  test("streaming: the chunks join into one message, with usage when asked", async () => {
    const stream = await client.chat.completions.create({
      model: s.modelId,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.ok(text.length > 0);
    assert.equal(usage?.completion_tokens, 8);
  });

  test("the stream helper's finalChatCompletion after a forced tool call", async () => {
    const runner = client.chat.completions.stream({
      model: s.modelId,
      messages: [{ role: "user", content: "Weather?" }],
      tools: [weatherTool],
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
    });
    const done = await runner.finalChatCompletion();
    const call = done.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.type === "function" && call.function.name, "get_weather");
    assert.equal(typeof (call.type === "function" && call.function.parsed_arguments && (call.function.parsed_arguments as { city: unknown }).city), "string");
  });
});

describe("openai-node: responses", () => {
  test("responses.parse with zodTextFormat: output_parsed, and the format echoed", async () => {
    const r = await client.responses.parse({
      model: s.modelId,
      input: "Tell me about a pet.",
      text: { format: zodTextFormat(Pet, "pet") },
      max_output_tokens: MAX_TOKENS,
    });
    assert.equal(r.status, "completed");
    Pet.parse(r.output_parsed);
    assert.equal(r.text?.format?.type, "json_schema");
    assert.equal((r.text!.format as { name: string }).name, "pet");
  });

  test("a raw json_schema text.format and json_object give JSON", async () => {
    const r = await client.responses.create({
      model: s.modelId,
      input: "A pet?",
      text: { format: { type: "json_schema", name: "pet", schema: petSchema, strict: true }, verbosity: "low" },
      max_output_tokens: MAX_TOKENS,
    });
    assert.deepEqual(Object.keys(JSON.parse(r.output_text)).sort(), ["friendly", "name"]);
    assert.equal(r.text?.verbosity, "low");
    const o = await client.responses.create({
      model: s.modelId,
      input: "JSON please",
      text: { format: { type: "json_object" } },
      max_output_tokens: MAX_TOKENS,
    });
    assert.doesNotThrow(() => JSON.parse(o.output_text), o.output_text);
  });

  test("multi-turn with store on and previous_response_id", async () => {
    const first = await client.responses.create({ model: s.modelId, input: "Once upon a time", max_output_tokens: 16 });
    const second = await client.responses.create({ model: s.modelId, input: "And then?", previous_response_id: first.id, max_output_tokens: 16 });
    assert.equal(second.previous_response_id, first.id);
    assert.ok(second.usage!.input_tokens > first.usage!.input_tokens);
    const items = await client.responses.inputItems.list(second.id);
    assert.equal(items.data.length, 3, "the first input, its output, the new input");
  });

  test("multi-turn re-sending the input with the returned output items, store on and off", async () => {
    for (const store of [true, false]) {
      const input: ResponseInputItem[] = [{ role: "user", content: "Once upon a time" }];
      const first = await client.responses.create({ model: s.modelId, input, store, max_output_tokens: 16 });
      input.push(...(first.output as ResponseInputItem[]), { role: "user", content: "And then?" });
      const second = await client.responses.create({ model: s.modelId, input, store, max_output_tokens: 16 });
      assert.equal(second.output[0]!.type, "message", `store ${store}`);
    }
  });

  test("a tool loop: the forced function_call and its output sent back with the call item", async () => {
    const tools = [
      {
        type: "function" as const,
        name: "get_weather",
        description: "Weather in a city",
        parameters: { type: "object", properties: { city: { type: "string", maxLength: 10 } }, required: ["city"], additionalProperties: false },
        strict: true,
      },
    ];
    const input: ResponseInputItem[] = [{ role: "user", content: "Weather in Paris?" }];
    const first = await client.responses.create({
      model: s.modelId,
      input,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      max_output_tokens: MAX_TOKENS,
    });
    const call = first.output.find((item) => item.type === "function_call");
    assert.ok(call && call.type === "function_call", JSON.stringify(first.output));
    assert.equal(typeof JSON.parse(call.arguments).city, "string");
    input.push(...(first.output as ResponseInputItem[]), { type: "function_call_output", call_id: call.call_id, output: "sunny" });
    const second = await client.responses.create({ model: s.modelId, input, tools, max_output_tokens: 16 });
    assert.equal(second.status === "completed" || second.status === "incomplete", true);
  });

  test("streaming with the stream helper: deltas, then the final response", async () => {
    const stream = client.responses.stream({ model: s.modelId, input: "Once upon a time", max_output_tokens: 16 });
    let deltas = "";
    stream.on("response.output_text.delta", (e) => (deltas += e.delta));
    const final = await stream.finalResponse();
    assert.equal(final.output_text, deltas);
    assert.equal(final.usage!.output_tokens, 16);
  });

  test("a streamed responses.parse with zodTextFormat", async () => {
    const stream = client.responses.stream({ model: s.modelId, input: "A pet?", text: { format: zodTextFormat(Pet, "pet") }, max_output_tokens: MAX_TOKENS });
    const final = await stream.finalResponse();
    Pet.parse(final.output_parsed);
  });
});

describe("openai-node: embeddings and errors", () => {
  test("embeddings: one vector per input", async () => {
    const r = await client.embeddings.create({ model: s.modelId, input: ["a cat", "a dog"] });
    assert.equal(r.data.length, 2);
    assert.ok(r.data[0]!.embedding.length > 0);
  });

  test("an unknown model is a NotFoundError, a bad parameter a BadRequestError naming it", async () => {
    await assert.rejects(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }), OpenAI.NotFoundError);
    await assert.rejects(client.responses.create({ model: s.modelId, input: "x", temperature: 5 }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.param, "temperature");
      return true;
    });
  });

  test("a tenant over its requests per minute gets a RateLimitError", async () => {
    const slow = new OpenAI({ baseURL: s.baseURL, apiKey: KEYS.slow, maxRetries: 0, timeout: 60_000 });
    for (let i = 0; i < SLOW_RPM; i++) await slow.chat.completions.create({ model: s.modelId, messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    await assert.rejects(slow.responses.create({ model: s.modelId, input: "x", max_output_tokens: 16 }), (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.ok(Number(err.headers?.get("retry-after")) > 0);
      return true;
    });
  });
});
