// Function tools on /v1/responses, on the real server (stories260K) through
// the official openai client: calls come back as function_call items (forced
// by grammar under `required` or a named function), stream as
// function_call_arguments events, and a function_call_output sent back
// continues the exchange, stored in responses and conversations.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { assertMatchesSpec, wireResponse } from "../../helpers/openapi.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { apiError, rawStream } from "./helpers.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "2048"]);
});
after(async () => {
  await t?.close();
});

const weather = {
  type: "function" as const,
  name: "get_weather",
  description: "Current weather in a city",
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false },
  strict: true,
};
const time = {
  type: "function" as const,
  name: "get_time",
  description: null,
  parameters: { type: "object", properties: { zone: { type: "string", enum: ["UTC", "CET"] } }, required: ["zone"], additionalProperties: false },
  strict: true,
};
// As the chat tool tests: sampled with a seed (a tiny model's greedy choice can be endless whitespace inside the JSON).
// Every response is checked against the spec's Response schema.
const create = async (body: Record<string, unknown>) => {
  const r = (await t.client.responses.create({ model: t.modelId, seed: 1, max_output_tokens: 400, ...body } as never)) as OpenAIResponse;
  assertMatchesSpec("Response", wireResponse(r));
  return r;
};

type Call = { type: "function_call"; id: string; call_id: string; name: string; arguments: string; status: string };
const calls = (r: OpenAIResponse) => r.output.filter((i) => i.type === "function_call") as unknown as Call[];

describe("function tools on /v1/responses", () => {
  test("tool_choice required: the output is function_call items calling a declared function with schema-valid arguments", async () => {
    const r = await create({ input: "What is the weather in Paris?", tools: [weather], tool_choice: "required", parallel_tool_calls: false });
    assert.equal(r.status, "completed");
    const [call, ...more] = calls(r);
    assert.ok(call, JSON.stringify(r.output));
    assert.equal(more.length, 0, "parallel_tool_calls false: one call");
    assert.equal(r.output.length, 1, "nothing but the call");
    assertMatchesSpec("FunctionToolCall", call);
    assert.match(call.id, /^fc_[0-9a-f]{48}$/);
    assert.match(call.call_id, /^call_[0-9a-f]{48}$/);
    assert.equal(call.name, "get_weather");
    assert.equal(call.status, "completed");
    const args = JSON.parse(call.arguments) as { city: unknown };
    assert.deepEqual(Object.keys(args), ["city"]);
    assert.equal(typeof args.city, "string");
    assert.ok((args.city as string).length <= 12);
    assert.deepEqual(r.tools, [weather], "tools are echoed as FunctionTool");
    assert.equal(r.tool_choice, "required");
    assert.equal(r.parallel_tool_calls, false);
  });

  test("a named function is the one called", async () => {
    const r = await create({ input: "Time?", tools: [weather, time], tool_choice: { type: "function", name: "get_time" }, parallel_tool_calls: false });
    const all = calls(r);
    assert.equal(all.length, 1);
    for (const c of all) {
      assert.equal(c.name, "get_time");
      assert.ok(["UTC", "CET"].includes((JSON.parse(c.arguments) as { zone: string }).zone));
    }
  });

  test("tool_choice none: the tools are not offered and the output is a message", async () => {
    const r = await create({ input: "Once upon a time", tools: [weather], tool_choice: "none", max_output_tokens: 16 });
    assert.deepEqual(
      r.output.map((i) => i.type),
      ["message"],
    );
    const plain = await create({ input: "Once upon a time", max_output_tokens: 16 });
    assert.equal(r.usage!.input_tokens, plain.usage!.input_tokens, "no tool list in the prompt");
    const offered = await create({ input: "Once upon a time", tools: [weather], max_output_tokens: 16 });
    assert.ok(offered.usage!.input_tokens > plain.usage!.input_tokens, "auto lists the tools in the prompt");
  });

  test("streamed: each call is an output item whose arguments stream as deltas, matching the final response", async () => {
    const s = await rawStream(`${t.url}/v1/responses`, {
      model: t.modelId,
      input: "Weather in Rome?",
      tools: [weather],
      tool_choice: "required",
      // One call, so the grammar ends the output (several items in order: test/unit/openai/responses/outputItems.test.ts).
      parallel_tool_calls: false,
      seed: 1,
      max_output_tokens: 400,
      stream: true,
    });
    assert.equal(s.status, 200);
    const events = s.events.map((e) => ({ name: e.event, data: JSON.parse(e.data) as Record<string, unknown> & { type: string; sequence_number: number } }));
    for (const [i, e] of events.entries()) {
      assert.equal(e.name, e.data.type);
      assert.equal(e.data.sequence_number, i);
    }
    const types = events.map((e) => e.data.type);
    assert.equal(types[0], "response.created");
    assert.equal(types.at(-1), "response.completed");
    const final = events.at(-1)!.data.response as OpenAIResponse;
    assertMatchesSpec("Response", final);
    for (const [i, e] of events.entries()) assertMatchesSpec("ResponseStreamEvent", e.data, `event ${i}`);
    for (const e of events) {
      if (e.data.type === "response.function_call_arguments.delta") assertMatchesSpec("ResponseFunctionCallArgumentsDeltaEvent", e.data);
      if (e.data.type === "response.function_call_arguments.done") assertMatchesSpec("ResponseFunctionCallArgumentsDoneEvent", e.data);
    }
    const finalCalls = calls(final);
    assert.equal(finalCalls.length, 1);
    for (const [n, call] of finalCalls.entries()) {
      const index = final.output.indexOf(call as never);
      const mine = events.filter((e) => e.data.item_id === call.id || (e.data.item as { id?: string } | undefined)?.id === call.id).map((e) => e.data);
      assert.deepEqual(
        mine.map((e) => e.type).filter((ty, i, all) => !(ty === "response.function_call_arguments.delta" && all[i - 1] === ty)),
        ["response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done"],
        `call ${n}`,
      );
      for (const e of mine) assert.equal(e.output_index, index);
      const added = mine[0]!.item as Call;
      assert.deepEqual([added.status, added.arguments, added.name, added.call_id], ["in_progress", "", "get_weather", call.call_id]);
      const streamed = mine
        .filter((e) => e.type === "response.function_call_arguments.delta")
        .map((e) => e.delta)
        .join("");
      assert.equal(streamed, call.arguments);
      const done = mine.find((e) => e.type === "response.function_call_arguments.done")!;
      assert.deepEqual([done.arguments, done.name], [call.arguments, "get_weather"]);
      assert.deepEqual(mine.at(-1)!.item, call);
    }
  });

  test("a function_call_output continues the exchange: the result is in the prompt, and chained and stored", async () => {
    const first = await create({ input: "Weather in Paris?", tools: [weather], tool_choice: "required", parallel_tool_calls: false });
    const [call] = calls(first);
    const result = { type: "function_call_output", call_id: call!.call_id, output: JSON.stringify({ temperature_c: 21, sky: "clear and sunny all day" }) };
    const second = await create({ previous_response_id: first.id, input: [result], tools: [weather], max_output_tokens: 16 });
    assert.deepEqual(second.output.map((i) => i.type).slice(0, 1), ["message"]);
    const withoutResult = await create({ previous_response_id: first.id, input: "ok", tools: [weather], max_output_tokens: 16 });
    assert.ok(second.usage!.input_tokens > withoutResult.usage!.input_tokens, "the function's output is rendered into the prompt");

    const items = await t.client.responses.inputItems.list(second.id, { order: "asc" });
    const types = items.data.map((i) => i.type);
    assert.deepEqual(types.slice(-2), ["function_call", "function_call_output"], "the call (from the chain) and its output");
    const output = items.data.at(-1) as unknown as { id: string; call_id: string; output: string; status: string };
    assert.match(output.id, /^fco_[0-9a-f]{48}$/);
    assert.deepEqual([output.call_id, output.output, output.status], [result.call_id, result.output, "completed"]);
    assert.deepEqual(items.data.at(-2), call, "the stored call is the one returned");
  });

  test("conversations keep calls and outputs, and a client may send back a call it received", async () => {
    const conv = await t.client.conversations.create({});
    const first = await create({ conversation: conv.id, input: "Weather?", tools: [weather], tool_choice: "required", parallel_tool_calls: false });
    const [call] = calls(first);
    await create({
      conversation: conv.id,
      input: [{ type: "function_call_output", call_id: call!.call_id, output: [{ type: "input_text", text: "sunny" }] }],
      max_output_tokens: 16,
    });
    const items = await t.client.conversations.items.list(conv.id, { order: "asc" });
    assert.deepEqual(
      items.data.map((i) => i.type),
      ["message", "function_call", "function_call_output", "message"],
    );
    assert.equal((items.data[2] as unknown as { output: string }).output, "sunny", "input_text parts are joined into the output");
    // Without previous_response_id or a conversation, the client sends the whole exchange itself.
    const manual = await create({
      input: [
        { role: "user", content: "Weather?" },
        { ...call!, id: undefined },
        { type: "function_call_output", call_id: call!.call_id, output: "sunny" },
      ],
      max_output_tokens: 16,
    });
    assert.equal(manual.status, "incomplete");
  });

  test("bad tool fields are 400s naming the parameter", async () => {
    const bad = async (body: Record<string, unknown>, param: string, message?: RegExp) => {
      const err = await apiError(create(body), OpenAI.BadRequestError);
      assert.equal(err.param, param, JSON.stringify(err.error));
      if (message) assert.match(err.message, message);
    };
    await bad({ input: "x", tools: [{ type: "web_search" }] }, "tools[0].type", /only "function" tools are supported/);
    await bad({ input: "x", tools: [weather, { ...weather }] }, "tools[1].name", /declared twice/);
    await bad({ input: "x", tools: [weather], tool_choice: { type: "function", name: "nope" } }, "tool_choice.name", /no tool named 'nope'/);
    await bad({ input: "x", tool_choice: "required" }, "tool_choice");
    await bad({ input: "x", tools: [{ ...weather, parameters: { type: "string" } }], tool_choice: "required" }, "tools[0].parameters");
    await bad({ input: "x", tools: [{ ...weather, name: "has space" }] }, "tools[0].name");
    await bad({ input: "x", tools: [weather], max_tool_calls: 2 }, "max_tool_calls");
    await bad(
      { input: [{ type: "function_call_output", call_id: "c", output: [{ type: "input_image", image_url: "x" }] }] },
      "input[0].output[0].type",
      /text only/,
    );
    await bad({ input: [{ type: "function_call", call_id: "c", name: "f" }] }, "input[0].arguments");
    await bad({ input: [{ type: "reasoning", summary: [] }] }, "input[0].type");
    await bad(
      {
        input: [
          { role: "user", content: "x" },
          { type: "function_call_output", call_id: "call_nowhere", output: "1" },
        ],
      },
      "input[1].call_id",
      /no function call with call_id 'call_nowhere'/,
    );
  });
});
