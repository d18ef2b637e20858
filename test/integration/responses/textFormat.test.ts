// text.format on /v1/responses against the real server: json_schema and
// json_object written by the output grammar (plain and streamed), `text`
// echoed as OpenAI echoes it (and stored so), and how a format meets tools.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { apiError } from "./helpers.js";

let t: TestServer;
let a: OpenAI;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "1024"]);
  a = t.client;
});
after(async () => {
  await t?.close();
});

const create = (client: OpenAI, body: Record<string, unknown>) =>
  client.responses.create({ model: t.modelId, max_output_tokens: 16, temperature: 0, ...body } as never) as Promise<OpenAIResponse>;

describe("text.format", () => {
  const schema = {
    type: "object",
    properties: { name: { type: "string", maxLength: 8 }, ok: { type: "boolean" } },
    required: ["name", "ok"],
    additionalProperties: false,
  };

  test("json_schema: the output validates, and text is echoed with every field (stored too)", async () => {
    const r = await create(a, {
      input: "A pet?",
      max_output_tokens: 100,
      text: { format: { type: "json_schema", name: "pet", schema, strict: true }, verbosity: "high" },
    });
    assert.equal(r.status, "completed");
    const value = JSON.parse(r.output_text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(value).sort(), ["name", "ok"]);
    const echoed = { format: { type: "json_schema", name: "pet", description: null, schema, strict: true }, verbosity: "high" };
    assert.deepEqual(r.text, echoed);
    assert.deepEqual((await a.responses.retrieve(r.id)).text, echoed);
  });

  test("json_schema bounds the grammar carries are enforced here as on chat (integer range, pattern)", async () => {
    const bounded = {
      type: "object",
      properties: { n: { type: "integer", minimum: 3, maximum: 5 }, code: { type: "string", pattern: "^[A-C][0-9]$" } },
      required: ["n", "code"],
      additionalProperties: false,
    };
    for (const seed of [1, 2, 3, 4]) {
      const r = await create(a, {
        input: "Pick",
        max_output_tokens: 60,
        temperature: 1,
        seed,
        text: { format: { type: "json_schema", name: "b", schema: bounded } },
      });
      assert.equal(r.status, "completed", r.output_text);
      const value = JSON.parse(r.output_text) as { n: number; code: string };
      assert.ok(Number.isInteger(value.n) && value.n >= 3 && value.n <= 5, r.output_text);
      assert.match(value.code, /^[A-C][0-9]$/, r.output_text);
    }
  });

  test("json_object gives JSON; text and no text echo the default", async () => {
    const r = await create(a, { input: "JSON?", max_output_tokens: 100, text: { format: { type: "json_object" } } });
    assert.doesNotThrow(() => JSON.parse(r.output_text), r.output_text);
    assert.deepEqual(r.text, { format: { type: "json_object" }, verbosity: "medium" });
    const plain = await create(a, { input: "Once", text: { format: { type: "text" } } });
    assert.deepEqual(plain.text, { format: { type: "text" }, verbosity: "medium" });
  });

  test("streamed: the deltas join into the JSON", async () => {
    const stream = a.responses.stream({
      model: t.modelId,
      input: "A pet?",
      max_output_tokens: 100,
      text: { format: { type: "json_schema", name: "pet", schema } },
    });
    let deltas = "";
    stream.on("response.output_text.delta", (e) => (deltas += e.delta));
    const final = await stream.finalResponse();
    assert.equal(final.output_text, deltas);
    assert.deepEqual(Object.keys(JSON.parse(deltas) as object).sort(), ["name", "ok"]);
  });

  test("with tools: a forced call is still a call; with tool_choice auto the JSON is the message", async () => {
    const tools = [
      { type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string", maxLength: 8 } }, required: ["city"] } },
    ];
    const text = { format: { type: "json_schema", name: "pet", schema } };
    const forced = await create(a, { input: "Weather?", max_output_tokens: 100, tools, tool_choice: "required", parallel_tool_calls: false, text });
    assert.equal(forced.output[0]!.type, "function_call");
    const auto = await create(a, { input: "Weather?", max_output_tokens: 100, tools, text });
    assert.equal(auto.output[0]!.type, "message");
    assert.deepEqual(Object.keys(JSON.parse(auto.output_text) as object).sort(), ["name", "ok"]);
  });

  test("ignore_eos cannot be combined with a JSON format", async () => {
    const err = await apiError(create(a, { input: "x", ignore_eos: true, text: { format: { type: "json_object" } } }), OpenAI.BadRequestError);
    assert.equal(err.param, "ignore_eos");
  });
});
