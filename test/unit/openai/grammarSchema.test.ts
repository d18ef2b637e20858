// src/openai/structured/grammarSchema.ts: what a client's JSON Schema becomes
// for the output grammar, and what is refused because the grammar cannot enforce it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { toGrammarSchema } from "../../../src/openai/structured/grammarSchema.js";
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
    ["pattern", { type: "object", properties: { zip: { type: "string", pattern: "^[0-9]{5}$" } } }, /'pattern' at '#\/properties\/zip'/],
    ["minimum", { type: "integer", minimum: 0 }, /'minimum' at '#'/],
    ["oneOf", { oneOf: [{ type: "string" }, { type: "number" }] }, /'oneOf'.*use anyOf/],
    ["allOf", { allOf: [{ type: "string" }] }, /'allOf'/],
    ["not", { not: { type: "string" } }, /'not'/],
    ["uniqueItems", { type: "array", uniqueItems: true }, /'uniqueItems'/],
    ["format", { type: "string", format: "email" }, /'format'.*date-time/],
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
