// Numeric bounds and string formats in structured output, and what a schema
// may cost (issue 18, item 4), on the real server through the official client.
// llama-2-tiny-random has random weights: whatever it writes comes from the
// grammar, so a value inside the bounds on every seed is the grammar's doing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let random: TestServer;
before(async () => {
  random = await startTestServer(["--model", MODELS.tinyRandom, "--slots", "4", "--ctx-per-slot", "1024"]);
});
after(async () => {
  await random?.close();
});

const SEEDS = [1, 2, 3, 4, 5, 6];
const messages = [{ role: "user" as const, content: "Numbers, please." }];
// Formats are checked by hand below (no ajv-formats here); ajv checks the rest.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
type ApiErr = InstanceType<typeof OpenAI.APIError>;

async function refused(body: Record<string, unknown>): Promise<ApiErr> {
  try {
    await random.client.chat.completions.create({ model: random.modelId, messages, max_tokens: 50, ...body } as never);
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.equal(err.status, 400);
    return err;
  }
  assert.fail("accepted");
}

describe("numeric bounds are enforced", () => {
  test("zod: z.number().int() (±2^53-1), .min(0).max(5), .positive(), ratio in [0, 1], .negative()", async () => {
    const Numbers = z.object({
      n: z.number().int(),
      small: z.number().int().min(0).max(5),
      pos: z.number().int().positive(),
      ratio: z.number().min(0).max(1),
      neg: z.number().negative(),
    });
    const format = zodResponseFormat(Numbers, "numbers");
    const { $schema: _draft, ...jsonSchema } = format.json_schema.schema!;
    const validate = ajv.compile(jsonSchema);
    for (const seed of SEEDS) {
      const r = await random.client.chat.completions.parse({ model: random.modelId, messages, response_format: format, seed, max_tokens: 300 });
      const content = r.choices[0]!.message.content!;
      assert.equal(r.choices[0]!.finish_reason, "stop", `seed ${seed}: ${content}`);
      const v = JSON.parse(content) as z.infer<typeof Numbers>;
      assert.ok(validate(v), `seed ${seed}: ${JSON.stringify(validate.errors)} in ${content}`);
      assert.ok(Number.isSafeInteger(v.n), `seed ${seed}: n ${v.n}`);
      assert.ok(Number.isInteger(v.small) && v.small >= 0 && v.small <= 5, `seed ${seed}: small ${v.small}`);
      assert.ok(Number.isInteger(v.pos) && v.pos > 0, `seed ${seed}: pos ${v.pos}`);
      assert.ok(v.ratio >= 0 && v.ratio <= 1, `seed ${seed}: ratio ${v.ratio}`);
      assert.ok(v.neg < 0, `seed ${seed}: neg ${v.neg}`);
      assert.deepEqual(r.choices[0]!.message.parsed, v);
    }
  });

  test("exclusive integer bounds, negative ranges, whole-number number bounds, and formats", async () => {
    const schema = {
      type: "object",
      properties: {
        between: { type: "integer", exclusiveMinimum: -3, exclusiveMaximum: 3 },
        negative: { type: "integer", minimum: -120, maximum: -7 },
        big: { type: "integer", minimum: 998, maximum: 1003 },
        temperature: { type: "number", minimum: -40, maximum: 50 },
        id: { type: "string", format: "uuid" },
        ip: { type: "string", format: "ipv4" },
        day: { type: "string", format: "date" },
      },
      required: ["between", "negative", "big", "temperature", "id", "ip", "day"],
      additionalProperties: false,
    };
    const validate = ajv.compile(schema);
    for (const seed of SEEDS.slice(0, 3)) {
      const r = await random.client.chat.completions.create({
        model: random.modelId,
        messages,
        response_format: { type: "json_schema", json_schema: { name: "bounds", schema, strict: true } },
        seed,
        max_tokens: 300,
      });
      const content = r.choices[0]!.message.content!;
      const v = JSON.parse(content) as { between: number; negative: number; big: number; temperature: number; id: string; ip: string; day: string };
      assert.ok(validate(v), `seed ${seed}: ${JSON.stringify(validate.errors)} in ${content}`);
      assert.ok(v.between > -3 && v.between < 3 && Number.isInteger(v.between), content);
      assert.ok(v.negative >= -120 && v.negative <= -7, content);
      assert.ok(v.big >= 998 && v.big <= 1003, content);
      assert.ok(v.temperature >= -40 && v.temperature <= 50, content);
      assert.match(v.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, content);
      assert.ok(
        v.ip.split(".").every((o) => String(Number(o)) === o && Number(o) <= 255),
        content,
      );
      assert.ok(!Number.isNaN(Date.parse(`${v.day}T00:00:00Z`)) && new Date(`${v.day}T00:00:00Z`).toISOString().startsWith(v.day), `a real date: ${content}`);
    }
  });

  test("bounds in a forced tool call's parameters are enforced too", async () => {
    const parameters = { type: "object", properties: { count: { type: "integer", minimum: 1, maximum: 3 } }, required: ["count"], additionalProperties: false };
    for (const seed of SEEDS.slice(0, 3)) {
      const r = await random.client.chat.completions.create({
        model: random.modelId,
        messages,
        tools: [{ type: "function", function: { name: "f", parameters } }],
        tool_choice: "required",
        parallel_tool_calls: false,
        seed,
        max_tokens: 200,
      });
      const call = r.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      const { count } = JSON.parse(call.function.arguments) as { count: number };
      assert.ok([1, 2, 3].includes(count), call.function.arguments);
    }
  });
});

describe("string patterns are enforced", () => {
  test("anchored patterns, alternation, quotes and backslashes in classes", async () => {
    // Anchored: an unanchored pattern lets a random model write on until max_tokens (it is a search).
    const patterns = { code: "^[A-Z]{2}-\\d{3}$", zip: "^\\d{5}(-\\d{4})?$", tagged: "^(?:x|yz){1,3}$", path: '^[^"\\\\]{1,4}(\\\\|")?$' };
    const schema = {
      type: "object",
      properties: Object.fromEntries(Object.entries(patterns).map(([k, pattern]) => [k, { type: "string", pattern }])),
      required: Object.keys(patterns),
      additionalProperties: false,
    };
    for (const seed of SEEDS.slice(0, 3)) {
      const r = await random.client.chat.completions.create({
        model: random.modelId,
        messages,
        response_format: { type: "json_schema", json_schema: { name: "p", schema } },
        seed,
        max_tokens: 200,
      });
      const content = r.choices[0]!.message.content!;
      assert.equal(r.choices[0]!.finish_reason, "stop", content);
      const v = JSON.parse(content) as Record<string, string>;
      for (const [k, pattern] of Object.entries(patterns)) assert.match(v[k]!, new RegExp(pattern, "u"), `seed ${seed}: ${k} in ${content}`);
    }
  });
});

describe("what the grammar cannot carry is a 400 naming the keyword", () => {
  for (const [keyword, property] of [
    ["multipleOf", { type: "integer", multipleOf: 5 }],
    ["exclusiveMaximum", { type: "number", exclusiveMaximum: 1 }],
    ["minimum", { type: "number", minimum: 0.5 }],
    ["format", { type: "string", format: "duration" }],
    ["pattern", { type: "string", pattern: "^(?!admin)[a-z]+$" }],
  ] as const) {
    test(keyword, async () => {
      const schema = { type: "object", properties: { p: property }, required: ["p"], additionalProperties: false };
      const e = await refused({ response_format: { type: "json_schema", json_schema: { name: "s", schema } } });
      assert.equal(e.code, "unsupported_parameter");
      assert.equal(e.param, "response_format.json_schema.schema");
      assert.match(e.message, new RegExp(`'${keyword}' at '#/properties/p'`));
    });
  }
});

describe("what a schema may cost", () => {
  const values = (n: number) => Array.from({ length: n }, (_, i) => `v${i}`);
  const enumSchema = (n: number) => ({ type: "object", properties: { pick: { enum: values(n) } }, required: ["pick"], additionalProperties: false });

  test("a 100,000-value enum is a 400 naming response_format.json_schema.schema, at once", async () => {
    const started = performance.now();
    const e = await refused({ response_format: { type: "json_schema", json_schema: { name: "s", schema: enumSchema(100_000) } } });
    assert.equal(e.param, "response_format.json_schema.schema");
    assert.match(e.message, /enum/);
    assert.ok(performance.now() - started < 5000);
  });

  test("in tools, the limit is shared and the 400 names the tool's parameters", async () => {
    const tool = (name: string) => ({ type: "function" as const, function: { name, parameters: enumSchema(600) } });
    const e = await refused({ tools: [tool("a"), tool("b")], tool_choice: "required" });
    assert.equal(e.param, "tools[1].function.parameters");
    const deep = await refused({
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { s: { type: "string", minLength: 1_000_000 } } } } }],
      tool_choice: "required",
    });
    assert.equal(deep.param, "tools[0].function.parameters");
    assert.match(deep.message, /minLength/);
  });

  // On stories260K's 512-token vocabulary: on a 32k vocabulary a 1000-value
  // enum can take over the engine's 250 ms a token to sample, and is then
  // failed as too slow (engine/sampleBudget.ts; test/integration/tenants/engineIsolation.test.ts).
  test("a schema at the limit still works: 1000 enum values", async () => {
    const small = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "256"]);
    try {
      const r = await small.client.chat.completions.create({
        model: small.modelId,
        messages,
        response_format: { type: "json_schema", json_schema: { name: "s", schema: enumSchema(1000) } },
        max_tokens: 100,
        seed: 1,
      });
      const v = JSON.parse(r.choices[0]!.message.content!) as { pick: string };
      assert.ok(values(1000).includes(v.pick), r.choices[0]!.message.content!);
    } finally {
      await small.close();
    }
  });
});
