// response_format json_schema / json_object on the real server, through the
// official openai client: the output grammar makes models that know nothing of
// JSON (stories260K, trained on children's stories; llama-2-tiny-random, random
// weights) write values that parse and validate against the client's schema.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let stories: TestServer;
let random: TestServer;
before(async () => {
  stories = await startTestServer(["--model", MODELS.stories260K, "--slots", "6", "--ctx-per-slot", "1024"]);
  random = await startTestServer(["--model", MODELS.tinyRandom, "--slots", "2", "--ctx-per-slot", "1024"]);
});
after(async () => {
  await stories?.close();
  await random?.close();
});

// Every string, array and map is bounded, so each value is complete long before max_tokens.
const PERSON = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 12 },
    age: { type: "integer" },
    score: { type: ["number", "null"] },
    mood: { enum: ["happy", "sad", 3, null] },
    tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    pet: { anyOf: [{ $ref: "#/$defs/pet" }, { type: "null" }] },
  },
  required: ["name", "age", "tags"],
  additionalProperties: false,
  $defs: { pet: { type: "object", properties: { kind: { const: "cat" }, legs: { type: "integer" } }, required: ["kind"] } },
} as const;

const ajv = new Ajv2020({ strict: true, allErrors: true });
const validatePerson = ajv.compile(PERSON);
const personFormat = { type: "json_schema" as const, json_schema: { name: "person", schema: PERSON as unknown as Record<string, unknown>, strict: true } };
const messages = [{ role: "user" as const, content: "Tell me about Tom and his cat." }];
const MAX_TOKENS = 600;

function assertValidPerson(content: string | null | undefined, what: string): void {
  assert.ok(content, `${what}: empty content`);
  const value: unknown = JSON.parse(content); // throws (fails the test) on invalid JSON
  assert.ok(validatePerson(value), `${what}: ${JSON.stringify(validatePerson.errors)}\n${content}`);
  assert.equal(content, content.trimEnd(), `${what}: nothing after the closing brace`);
}

describe("json_schema", () => {
  test("several seeds at once (one batch): each output parses and validates against the schema, finish stop", async () => {
    const seeds = [1, 2, 3, 4, 5, 6];
    const results = await Promise.all(
      seeds.map((seed) =>
        stories.client.chat.completions.create({ model: stories.modelId, messages, seed, max_tokens: MAX_TOKENS, response_format: personFormat }),
      ),
    );
    const distinct = new Set<string>();
    for (const [i, r] of results.entries()) {
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, "stop", `seed ${seeds[i]}: ${choice.message.content}`);
      assert.ok(r.usage!.completion_tokens < MAX_TOKENS);
      assertValidPerson(choice.message.content, `seed ${seeds[i]}`);
      distinct.add(choice.message.content!);
    }
    assert.ok(distinct.size > 1, "different seeds, different values: the grammar constrains, it does not dictate");
  });

  test("streamed: the deltas join into a valid value", async () => {
    const stream = await stories.client.chat.completions.create({
      model: stories.modelId,
      messages,
      seed: 7,
      max_tokens: MAX_TOKENS,
      response_format: personFormat,
      stream: true,
    });
    let content = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, "stop");
    assertValidPerson(content, "stream");
  });

  test("a model with random weights and a 32,000-token vocabulary writes valid values too", async () => {
    for (const seed of [1, 2]) {
      const r = await random.client.chat.completions.create({ model: random.modelId, messages, seed, max_tokens: MAX_TOKENS, response_format: personFormat });
      assert.equal(r.choices[0]!.finish_reason, "stop");
      assertValidPerson(r.choices[0]!.message.content, `random seed ${seed}`);
    }
  });

  test("max_tokens cuts the value: finish length, exactly max_tokens tokens, and the JSON is incomplete", async () => {
    const r = await stories.client.chat.completions.create({ model: stories.modelId, messages, seed: 1, max_tokens: 5, response_format: personFormat });
    assert.equal(r.choices[0]!.finish_reason, "length");
    assert.equal(r.usage!.completion_tokens, 5);
    assert.throws(() => JSON.parse(r.choices[0]!.message.content!));
  });

  test("banning every token of the vocabulary still yields a valid value, and the engine keeps serving", async () => {
    // Under a grammar a ban is finite: it loses to any token the grammar allows
    // but is taken when the grammar allows nothing else. An infinite one left
    // llama.cpp no token to accept and killed the worker, and every request in it.
    const banAll = Object.fromEntries(Array.from({ length: 512 }, (_, t) => [String(t), -100]));
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    const bystander = stories.client.chat.completions.create({ model: stories.modelId, messages, max_tokens: 30 });
    const r = await stories.client.chat.completions.create({
      model: stories.modelId,
      messages,
      max_tokens: 50,
      logit_bias: banAll,
      response_format: { type: "json_schema", json_schema: { name: "ok", schema } },
    });
    assert.ok(ajv.validate(schema, JSON.parse(r.choices[0]!.message.content!)), r.choices[0]!.message.content!);
    assert.equal((await bystander).choices[0]!.finish_reason, "length");
    const after = await stories.client.chat.completions.create({ model: stories.modelId, messages, max_tokens: 3 });
    assert.equal(after.usage!.completion_tokens, 3);
  });
});

describe("json_object", () => {
  test("outputs that finish are JSON objects; those that do not stopped at max_tokens", async () => {
    const maxTokens = 200;
    const results = await Promise.all(
      [1, 2, 3, 4].map((seed) =>
        stories.client.chat.completions.create({ model: stories.modelId, messages, seed, max_tokens: maxTokens, response_format: { type: "json_object" } }),
      ),
    );
    let finished = 0;
    for (const r of results) {
      const choice = r.choices[0]!;
      if (choice.finish_reason === "length") {
        assert.equal(r.usage!.completion_tokens, maxTokens);
        continue;
      }
      assert.equal(choice.finish_reason, "stop");
      const value: unknown = JSON.parse(choice.message.content!);
      assert.ok(value !== null && typeof value === "object" && !Array.isArray(value), choice.message.content!);
      finished++;
    }
    assert.ok(finished >= 1, "at least one seed finished its object");
  });
});

describe("refused schemas", () => {
  async function badRequest(schema: Record<string, unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
    try {
      await stories.client.chat.completions.create({
        model: stories.modelId,
        messages,
        response_format: { type: "json_schema", json_schema: { name: "x", schema } },
      });
    } catch (err) {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      return err;
    }
    assert.fail("accepted");
  }

  test("a keyword the grammar cannot enforce is a 400 naming it, before any generation", async () => {
    // Patterns and integer bounds are enforced now (structuredBounds.test.ts); a lookahead and multipleOf are not.
    const e = await badRequest({ type: "object", properties: { zip: { type: "string", pattern: "^(?!0)[0-9]{5}$" } } });
    assert.equal(e.param, "response_format.json_schema.schema");
    assert.equal(e.code, "unsupported_parameter");
    assert.match(e.message, /'pattern' at '#\/properties\/zip'/);
    const m = await badRequest({ type: "integer", multipleOf: 3 });
    assert.match(m.message, /'multipleOf'/);
  });

  test("an inconsistent schema is a 400 invalid_value", async () => {
    const e = await badRequest({ type: "object", properties: { a: { type: "string" } }, required: ["b"] });
    assert.equal(e.code, "invalid_value");
    assert.equal(e.param, "response_format.json_schema.schema");
  });
});
