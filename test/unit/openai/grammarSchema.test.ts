// src/openai/structured/grammarSchema.ts: what a client's JSON Schema becomes
// for the output grammar, and what is refused because the grammar cannot enforce it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { SCHEMA_LIMITS, toGrammarSchema } from "../../../src/openai/structured/grammarSchema.js";
import { parseChatRequest, toEngineRequest } from "../../../src/openai/chat/protocol.js";

const PARAM = "response_format.json_schema.schema";
const translate = (schema: unknown) => toGrammarSchema(schema, { param: PARAM });

function refusal(schema: unknown): ApiError {
  try {
    translate(schema);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.param, PARAM);
    assert.equal(err.status, 400);
    return err;
  }
  assert.fail(`accepted ${JSON.stringify(schema)}`);
}

describe("translation", () => {
  test("objects: every declared property, no others; annotations dropped", () => {
    assert.deepEqual(
      translate({
        title: "Person",
        description: "d",
        type: "object",
        properties: { name: { type: "string", maxLength: 10, description: "x" }, age: { type: "integer" } },
        required: ["name"],
        additionalProperties: false,
      }),
      { type: "object", properties: { name: { type: "string", maxLength: 10 }, age: { type: "integer" } }, additionalProperties: false },
    );
  });

  test("declared properties narrow additionalProperties to none (extra keys could collide with declared ones)", () => {
    const out = translate({ type: "object", properties: { a: { type: "boolean" } }, additionalProperties: { type: "string" } });
    assert.deepEqual(out, { type: "object", properties: { a: { type: "boolean" } }, additionalProperties: false });
  });

  test("maps keep additionalProperties and maxProperties", () => {
    assert.deepEqual(translate({ type: "object", additionalProperties: { type: "number" }, maxProperties: 3 }), {
      type: "object",
      additionalProperties: { type: "number" },
      maxProperties: 3,
    });
    assert.deepEqual(translate({ type: "object", additionalProperties: false }), { type: "object", additionalProperties: false });
  });

  test("anyOf becomes the grammar's union; type arrays become one branch per type", () => {
    assert.deepEqual(translate({ anyOf: [{ type: "string" }, { type: "null" }] }), { oneOf: [{ type: "string" }, { type: "null" }] });
    assert.deepEqual(translate({ type: ["string", "null"], maxLength: 3 }), { oneOf: [{ type: "string", maxLength: 3 }, { type: "null" }] });
  });

  test("arrays: items, prefixItems, bounds; a typeless schema is narrowed to what its keywords describe", () => {
    assert.deepEqual(translate({ type: "array", items: { enum: ["a", 1, null] }, minItems: 1, maxItems: 4 }), {
      type: "array",
      items: { enum: ["a", 1, null] },
      minItems: 1,
      maxItems: 4,
    });
    assert.deepEqual(translate({ prefixItems: [{ const: 1 }], items: false }), { type: "array", prefixItems: [{ const: 1 }], maxItems: 1 });
    assert.deepEqual(translate({ properties: { a: { type: "null" } } }), { type: "object", properties: { a: { type: "null" } }, additionalProperties: false });
  });

  test("$defs at the root and #/$defs refs are kept, with the root wrapped so references resolve", () => {
    const out = translate({ type: "object", properties: { n: { $ref: "#/$defs/node" } }, $defs: { node: { type: "integer" } } });
    assert.deepEqual(out, {
      oneOf: [{ type: "object", properties: { n: { $ref: "#/$defs/node" } }, additionalProperties: false }],
      $defs: { node: { type: "integer" } },
    });
  });

  test("string formats the grammar writes exactly are kept", () => {
    assert.deepEqual(translate({ type: "string", format: "date" }), { type: "string", format: "date" });
  });
});

describe("refusals name the keyword and where it is", () => {
  const cases: Array<[string, unknown, RegExp]> = [
    [
      "a pattern with a lookahead",
      { type: "object", properties: { zip: { type: "string", pattern: "^(?=1)[0-9]{5}$" } } },
      /'pattern' at '#\/properties\/zip'.*lookaround/,
    ],
    ["a pattern with a backreference", { type: "string", pattern: "^(a)\\1$" }, /'pattern'.*backreference/],
    ["a pattern beside a format", { type: "string", format: "uuid", pattern: "^[0-9a-f-]{36}$" }, /'pattern'.*'format'/],
    ["a pattern beside lengths", { type: "string", pattern: "^a+$", maxLength: 3 }, /'pattern'.*'maxLength'/],
    ["a fractional number bound", { type: "number", minimum: 0.5 }, /'minimum' at '#'.*whole-number/],
    [
      "an exclusive number bound other than 0",
      { type: "object", properties: { p: { type: "number", exclusiveMaximum: 1 } } },
      /'exclusiveMaximum' at '#\/properties\/p'/,
    ],
    ["multipleOf", { type: "integer", multipleOf: 5 }, /'multipleOf' at '#'/],
    ["oneOf", { oneOf: [{ type: "string" }, { type: "number" }] }, /'oneOf'.*use anyOf/],
    ["allOf", { allOf: [{ type: "string" }] }, /'allOf'/],
    ["not", { not: { type: "string" } }, /'not'/],
    ["uniqueItems", { type: "array", uniqueItems: true }, /'uniqueItems'/],
    ["format", { type: "string", format: "duration" }, /'format'.*date-time/],
    ["patternProperties", { type: "object", patternProperties: { "^a": {} } }, /'patternProperties'/],
    ["nullable", { type: "string", nullable: true }, /'nullable'.*OpenAPI/],
    ["definitions", { definitions: { a: {} } }, /'definitions'.*\$defs/],
    ["nested $defs", { type: "object", properties: { a: { $defs: {}, type: "string" } } }, /'\$defs' at '#\/properties\/a'/],
    ["$ref elsewhere", { $ref: "https://example.com/s.json" }, /'\$ref'/],
    ["$ref beside a constraint", { $ref: "#/$defs/a", type: "string", $defs: { a: {} } }, /'type'.*'\$ref'/],
    ["object enum values", { enum: [{ a: 1 }] }, /'enum'/],
    ["tuple items", { type: "array", items: [{ type: "string" }] }, /'items'.*prefixItems/],
    ["minProperties on a map", { type: "object", additionalProperties: true, minProperties: 1 }, /'minProperties'/],
    ["maxProperties below the declared ones", { type: "object", properties: { a: {}, b: {} }, maxProperties: 1 }, /'maxProperties'/],
    ["unknown keywords", { type: "string", "x-custom": 1 }, /'x-custom'/],
  ];
  for (const [what, schema, message] of cases) {
    test(what, () => {
      const e = refusal(schema);
      assert.equal(e.code, "unsupported_parameter");
      assert.match(e.message, message);
    });
  }

  test("inconsistent schemas are invalid values", () => {
    for (const schema of [
      { type: "object", properties: { a: {} }, required: ["b"] },
      { $ref: "#/$defs/missing" },
      { type: "strng" },
      { type: "integer", enum: [1.5] },
      false,
      "object",
    ]) {
      assert.equal(refusal(schema).code, "invalid_value", JSON.stringify(schema));
    }
  });
});

describe("chat response_format", () => {
  const chat = (extra: Record<string, unknown>) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

  test("json_object, json_schema and text become the engine's grammar (or none)", () => {
    assert.deepEqual(toEngineRequest(parseChatRequest(chat({ response_format: { type: "json_object" } })), "t").grammar, { kind: "json" });
    const schema = { type: "object", properties: { a: { type: "boolean" } } };
    const req = parseChatRequest(chat({ response_format: { type: "json_schema", json_schema: { name: "a_b-1", schema, strict: true } } }));
    assert.deepEqual(toEngineRequest(req, "t").grammar, { kind: "json_schema", schema: { ...schema, additionalProperties: false } });
    assert.equal("grammar" in toEngineRequest(parseChatRequest(chat({ response_format: { type: "text" } })), "t"), false);
  });

  test("malformed response_format names the field", () => {
    const bad = (rf: unknown) => {
      try {
        parseChatRequest(chat({ response_format: rf }));
      } catch (err) {
        assert.ok(err instanceof ApiError);
        return err.param;
      }
      assert.fail(JSON.stringify(rf));
    };
    assert.equal(bad({ type: "json_schema", json_schema: { name: "has space" } }), "response_format.json_schema.name");
    assert.equal(bad({ type: "json_schema" }), "response_format.json_schema");
    assert.match(String(bad({ type: "xml" })), /^response_format/);
  });

  test("ignore_eos cannot be combined with a JSON response_format", () => {
    try {
      parseChatRequest(chat({ ignore_eos: true, response_format: { type: "json_object" } }));
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof ApiError);
      assert.equal(err.param, "ignore_eos");
    }
  });
});

describe("numeric bounds (issue 18: zod's z.number().int() always has them)", () => {
  test("integer bounds, exclusive or not, become one inclusive range", () => {
    const SAFE = Number.MAX_SAFE_INTEGER;
    assert.deepEqual(translate({ type: "integer", minimum: -SAFE, maximum: SAFE }), { type: "integer", minimum: -SAFE, maximum: SAFE });
    assert.deepEqual(translate({ type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 10 }), { type: "integer", minimum: 1, maximum: 9 });
    assert.deepEqual(translate({ type: "integer", minimum: 0.5, maximum: 5.5 }), { type: "integer", minimum: 1, maximum: 5 });
    assert.deepEqual(translate({ type: "integer", minimum: 0, exclusiveMinimum: 3 }), { type: "integer", minimum: 4 });
    assert.deepEqual(translate({ type: "integer", multipleOf: 1, maximum: 3 }), { type: "integer", maximum: 3 });
    assert.equal(refusal({ type: "integer", minimum: 3, maximum: 2 }).code, "invalid_value");
    assert.equal(refusal({ type: "integer", exclusiveMinimum: 2, exclusiveMaximum: 3 }).code, "invalid_value");
  });

  test("number bounds: whole numbers, or the sign", () => {
    assert.deepEqual(translate({ type: "number", minimum: 0 }), { type: "number", minimum: 0 });
    assert.deepEqual(translate({ type: "number", minimum: -1, maximum: 1 }), { type: "number", minimum: -1, maximum: 1 });
    assert.deepEqual(translate({ type: "number", exclusiveMinimum: 0 }), { type: "number", exclusiveMinimum: 0 });
    assert.equal(refusal({ type: "number", exclusiveMinimum: 0, maximum: 1 }).code, "unsupported_parameter");
  });

  test("bounded schemas go to the front's GBNF; the others stay with node-llama-cpp's JSON grammar", () => {
    const chat = (schema: unknown) => ({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      response_format: { type: "json_schema", json_schema: { name: "s", schema } },
    });
    const bounded = toEngineRequest(parseChatRequest(chat({ type: "object", properties: { n: { type: "integer", minimum: 0, maximum: 5 } } })), "t").grammar;
    assert.equal(bounded?.kind, "gbnf");
    assert.match((bounded as { grammar: string }).grammar, /\[0-5\]/);
    // A property that happens to be called "minimum" is not a bound.
    const plain = toEngineRequest(
      parseChatRequest(chat({ type: "object", properties: { minimum: { type: "integer" }, format: { type: "string" } } })),
      "t",
    ).grammar;
    assert.equal(plain?.kind, "json_schema");
  });
});

describe("patterns", () => {
  test("a pattern the grammar can write is kept and goes to the front's GBNF", () => {
    assert.deepEqual(translate({ type: "string", pattern: "^\\d{5}(-\\d{4})?$" }), { type: "string", pattern: "^\\d{5}(-\\d{4})?$" });
    const req = parseChatRequest({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object", properties: { zip: { pattern: "^[0-9]{5}$" } } } } },
    });
    assert.equal(toEngineRequest(req, "t").grammar?.kind, "gbnf");
    assert.equal(refusal({ type: "string", pattern: "(" }).code, "invalid_value");
  });
});

describe("what a schema may cost (a 100,000-value enum held the shared engine for a minute)", () => {
  const tooCostly = (schema: unknown, what: RegExp) => {
    const e = refusal(schema);
    assert.equal(e.code, "invalid_value");
    assert.match(e.message, what);
  };
  const props = (n: number, value: unknown = { type: "null" }) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, value]));

  test("enum values, properties, anyOf branches, characters, nesting, lengths: refused past the limit, accepted at it", () => {
    const values = (n: number) => Array.from({ length: n }, (_, i) => i);
    translate({ enum: values(SCHEMA_LIMITS.enumValues) });
    tooCostly({ enum: values(SCHEMA_LIMITS.enumValues + 1) }, /more than 1000 enum/);
    tooCostly({ type: "object", properties: { a: { enum: values(600) }, b: { enum: values(600) } } }, /enum.*'#\/properties\/b'/);
    translate({ type: "object", properties: props(SCHEMA_LIMITS.properties) });
    tooCostly({ type: "object", properties: { ...props(SCHEMA_LIMITS.properties), extra: { type: "null" } } }, /more than 5000 object properties/);
    tooCostly({ anyOf: Array.from({ length: SCHEMA_LIMITS.anyOfBranches + 1 }, () => ({ type: "null" })) }, /anyOf/);
    tooCostly({ enum: ["x".repeat(60_000), "y".repeat(60_001)] }, /characters/);
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < SCHEMA_LIMITS.depth; i++) deep = { type: "object", properties: { a: deep } };
    translate(deep);
    tooCostly({ type: "array", items: deep }, /levels of nested/);
    translate({ type: "string", maxLength: SCHEMA_LIMITS.repetitions });
    tooCostly({ type: "string", minLength: 1_000_000 }, /length and count bounds/);
    tooCostly({ type: "object", properties: props(20, { type: "string", maxLength: 10_000 }) }, /length and count bounds/);
  });

  test("the budget is shared by the tools of one request, and the refusal names the tool", () => {
    const chat = { model: "m", messages: [{ role: "user", content: "hi" }], tool_choice: "required" };
    const tool = (name: string) => ({
      type: "function",
      function: { name, parameters: { type: "object", properties: { x: { enum: Array.from({ length: 600 }, (_, i) => i) } } } },
    });
    try {
      toEngineRequest(parseChatRequest({ ...chat, tools: [tool("a"), tool("b")] }), "t");
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof ApiError);
      assert.equal(err.param, "tools[1].function.parameters");
      assert.equal(err.status, 400);
    }
    assert.ok(toEngineRequest(parseChatRequest({ ...chat, tools: [tool("a")] }), "t").grammar);
  });

  test("$ref loops that write nothing, or never end, are refused", () => {
    tooCostly({ $ref: "#/$defs/a", $defs: { a: { $ref: "#/$defs/b" }, b: { anyOf: [{ $ref: "#/$defs/a" }, { type: "null" }] } } }, /refers back/);
    tooCostly({ $ref: "#/$defs/node", $defs: { node: { type: "object", properties: { next: { $ref: "#/$defs/node" } } } } }, /recurse without end/);
    // A linked list that may end is fine.
    translate({ $ref: "#/$defs/node", $defs: { node: { type: "object", properties: { next: { anyOf: [{ $ref: "#/$defs/node" }, { type: "null" }] } } } } });
  });
});
