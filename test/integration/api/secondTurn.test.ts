// The second turn of real clients (issue 18, item 1): OpenAI's documented chat
// loop appends `completion.choices[0].message` unchanged, and the SDKs' objects
// carry keys a request never sets (`refusal`, `annotations`, `parsed`,
// `index`...). OpenAI ignores unknown keys inside messages, parts and tool
// calls; so must llamux, or every second turn is a 400.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "2048"]);
});
after(async () => {
  await t?.close();
});

const ADD_PARAMS = {
  type: "object",
  properties: { a: { type: "integer", minimum: 0, maximum: 9 }, b: { type: "integer", minimum: 0, maximum: 9 } },
  required: ["a", "b"],
  additionalProperties: false,
};
const tools: OpenAI.ChatCompletionTool[] = [{ type: "function", function: { name: "add", description: "Adds two digits", parameters: ADD_PARAMS } }];

describe("the second turn", () => {
  test("the documented loop: append completion.choices[0].message unchanged, plain text", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Once upon a time" }];
    const first = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 6, seed: 1 });
    const returned = first.choices[0]!.message;
    assert.ok("annotations" in returned && "refusal" in returned, "the message carries the keys that used to be refused");
    messages.push(returned, { role: "user", content: "And then?" });
    const second = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 6, seed: 1 });
    assert.equal(second.choices[0]!.message.role, "assistant");
    // Python's model_dump() writes every field, null where unset.
    const dumped = { ...returned, audio: null, function_call: null, tool_calls: null };
    const third = await t.client.chat.completions.create({ model: t.modelId, messages: [messages[0]!, dumped as never, messages[2]!], max_tokens: 4 });
    assert.equal(third.object, "chat.completion");
  });

  test("after a tool call: the assistant message with tool_calls, then the tool's answer", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Add two and three." }];
    const first = await t.client.chat.completions.create({
      model: t.modelId,
      messages,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: 200,
      seed: 2,
    });
    const returned = first.choices[0]!.message;
    const call = returned.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    messages.push(returned, { role: "tool", tool_call_id: call.id, content: "5" });
    const second = await t.client.chat.completions.create({ model: t.modelId, messages, tools, max_tokens: 6 });
    assert.equal(second.choices[0]!.message.role, "assistant");
  });

  test("after client.chat.completions.parse() with a zod schema: the message with `parsed` goes back", async () => {
    const Answer = z.object({ digit: z.number().int().min(0).max(5), word: z.string().max(8) });
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Pick a digit." }];
    const first = await t.client.chat.completions.parse({
      model: t.modelId,
      messages,
      response_format: zodResponseFormat(Answer, "answer"),
      max_tokens: 60,
      seed: 3,
    });
    const returned = first.choices[0]!.message;
    assert.ok(returned.parsed, "the SDK parsed the answer");
    assert.ok(returned.parsed.digit >= 0 && returned.parsed.digit <= 5);
    messages.push(returned, { role: "user", content: "Another." });
    const second = await t.client.chat.completions.parse({
      model: t.modelId,
      messages,
      response_format: zodResponseFormat(Answer, "answer"),
      max_tokens: 60,
      seed: 4,
    });
    assert.ok(second.choices[0]!.message.parsed);
    assert.ok(Number.isInteger(second.choices[0]!.message.parsed.digit));
  });

  test("an assistant text part rebuilt with extra keys (@openai/agents) is read as its text", async () => {
    const part = { type: "text", text: "Tom ran.", role: "assistant", refusal: null, annotations: [] };
    const messages = [
      { role: "user", content: "Tell me" },
      { role: "assistant", content: [part] },
      { role: "user", content: "More" },
    ] as OpenAI.ChatCompletionMessageParam[];
    const r = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 4 });
    assert.equal(r.choices[0]!.message.role, "assistant");
    // The part's text reached the prompt: the same conversation with a plain string part costs the same tokens.
    const plain = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [messages[0]!, { role: "assistant", content: [{ type: "text", text: "Tom ran." }] }, messages[2]!],
      max_tokens: 4,
    });
    assert.equal(r.usage!.prompt_tokens, plain.usage!.prompt_tokens);
  });

  test("streamed tool-call deltas, accumulated with their `index`, are accepted back", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Add one and one." }];
    const stream = await t.client.chat.completions.create({
      model: t.modelId,
      messages,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: 200,
      seed: 5,
      stream: true,
    });
    // The usual hand-written accumulation: deltas merged per index, `index` kept.
    const calls: Array<{ index: number; id?: string; type?: string; function: { name?: string; arguments: string } }> = [];
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        const acc = (calls[d.index] ??= { index: d.index, function: { arguments: "" } });
        if (d.id) acc.id = d.id;
        if (d.type) acc.type = d.type;
        if (d.function?.name) acc.function.name = d.function.name;
        acc.function.arguments += d.function?.arguments ?? "";
      }
    }
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.index, 0);
    messages.push({ role: "assistant", content: null, tool_calls: calls } as never, { role: "tool", tool_call_id: calls[0]!.id!, content: "2" });
    const r = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 4 });
    assert.equal(r.choices[0]!.message.role, "assistant");
    // The SDK's own stream helper: its final message goes back as well.
    const runner = t.client.chat.completions.stream({
      model: t.modelId,
      messages: messages.slice(0, 1),
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: 200,
      seed: 6,
    });
    const final = await runner.finalChatCompletion();
    const again = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [messages[0]!, final.choices[0]!.message, { role: "tool", tool_call_id: final.choices[0]!.message.tool_calls![0]!.id, content: "2" }],
      max_tokens: 4,
    });
    assert.equal(again.object, "chat.completion");
  });

  test("tools beside a JSON response_format (@openai/agents with an output type): a forced call is a call, then auto writes the JSON message", async () => {
    const format: OpenAI.ResponseFormatJSONSchema = {
      type: "json_schema",
      json_schema: {
        name: "sum",
        schema: { type: "object", properties: { sum: { type: "integer", minimum: 0, maximum: 18 } }, required: ["sum"], additionalProperties: false },
      },
    };
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Add 2 and 3" }];
    const first = await t.client.chat.completions.create({
      model: t.modelId,
      messages,
      tools,
      tool_choice: "required",
      parallel_tool_calls: false,
      response_format: format,
      max_tokens: 200,
      seed: 3,
    });
    assert.equal(first.choices[0]!.finish_reason, "tool_calls");
    const call = first.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.type === "function" && call.function.name, "add");
    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "5" });
    const second = await t.client.chat.completions.create({ model: t.modelId, messages, tools, response_format: format, max_tokens: 200, seed: 3 });
    assert.equal(second.choices[0]!.finish_reason, "stop");
    assert.equal(second.choices[0]!.message.tool_calls ?? undefined, undefined);
    const value = JSON.parse(second.choices[0]!.message.content!) as { sum: number };
    assert.ok(Number.isInteger(value.sum) && value.sum >= 0 && value.sum <= 18, second.choices[0]!.message.content!);
  });

  test("real errors inside messages are still 400s naming the field", async () => {
    const bad = (messages: unknown) => t.client.chat.completions.create({ model: t.modelId, messages: messages as never, max_tokens: 2 });
    await assert.rejects(
      bad([{ role: "user", content: [{ type: "text", text: 5, extra: 1 }] }]),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "messages[0].content[0].text",
    );
    await assert.rejects(
      bad([{ role: "user", content: [{ type: "image_url", image_url: { url: "data:," } }] }]),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "messages[0].content[0].type",
    );
    await assert.rejects(
      bad([{ role: "wizard", content: "x" }]),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "messages[0].role",
    );
    // Strict at the top level: a misspelt parameter is still unknown_parameter.
    await assert.rejects(
      t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "x" }], max_tokenz: 2 } as never),
      (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.code === "unknown_parameter" && e.param === "max_tokenz",
    );
  });
});
