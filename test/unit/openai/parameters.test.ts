// The spec walk: every request property of OpenAI's schemas for the endpoints
// llamux serves is classified in src/openai/parameters.ts (implemented, refused
// unless neutral, or accepted and ignored), and the table agrees with the zod
// schemas that enforce it and with docs/api.md, which documents it.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import type { z } from "zod";
import { ApiError } from "../../../src/errors.js";
import { chatRequestSchema, parseChatRequest } from "../../../src/openai/chat/protocol.js";
import { completionRequestSchema, parseCompletionRequest } from "../../../src/openai/completions/protocol.js";
import { embeddingRequestSchema, parseEmbeddingRequest, refuseEmbeddingParameters } from "../../../src/openai/embeddings/protocol.js";
import { CHAT_COMPLETION_PARAMETERS, COMPLETION_PARAMETERS, embeddingParameters, paramsHandled, type ParamTable } from "../../../src/openai/parameters.js";
import { REPO_ROOT, requestPropertyNames } from "../../helpers/openapi.js";
import { CHAT_REFUSED_SAMPLES, COMPLETION_REFUSED_SAMPLES, EMBEDDING_REFUSED_SAMPLES } from "../../helpers/parameterSamples.js";

const README = fs.readFileSync(path.join(REPO_ROOT, "docs", "api.md"), "utf8");

interface Endpoint {
  name: string;
  specSchema: string;
  table: ParamTable;
  zodSchema: z.ZodObject;
  parse: (body: unknown) => unknown;
  minimal: Record<string, unknown>;
  samples: Record<string, unknown>;
}

const EMBEDDING_SIZE = 64;

const ENDPOINTS: Endpoint[] = [
  {
    name: "POST /v1/chat/completions",
    specSchema: "CreateChatCompletionRequest",
    table: CHAT_COMPLETION_PARAMETERS,
    zodSchema: chatRequestSchema,
    parse: parseChatRequest,
    minimal: { model: "m", messages: [{ role: "user", content: "hi" }] },
    samples: CHAT_REFUSED_SAMPLES,
  },
  {
    name: "POST /v1/completions",
    specSchema: "CreateCompletionRequest",
    table: COMPLETION_PARAMETERS,
    zodSchema: completionRequestSchema,
    parse: parseCompletionRequest,
    minimal: { model: "m", prompt: "hi" },
    samples: COMPLETION_REFUSED_SAMPLES,
  },
  {
    // The table depends on the model's embedding size (`dimensions` equal to it is neutral).
    name: "POST /v1/embeddings",
    specSchema: "CreateEmbeddingRequest",
    table: embeddingParameters(EMBEDDING_SIZE),
    zodSchema: embeddingRequestSchema,
    parse: (body) => {
      const req = parseEmbeddingRequest(body);
      refuseEmbeddingParameters(req, EMBEDDING_SIZE);
      return req;
    },
    minimal: { model: "m", input: "hi" },
    samples: EMBEDDING_REFUSED_SAMPLES,
  },
];

/** The README bullet that starts with `**label**`, up to the next bullet. */
function readmeBullet(label: string): string {
  const start = README.indexOf(`- **${label}**`);
  assert.ok(start >= 0, `README has no "- **${label}**" bullet`);
  const end = README.indexOf("\n- ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

const sorted = (xs: Iterable<string>) => [...xs].sort();

test("the spec walk reads the property names through allOf and $ref", () => {
  // CreateChatCompletionRequest keeps temperature, user... in CreateModelResponseProperties,
  // reached through allOf → $ref: a walk that missed them would find ~20 names, not ~37.
  const chat = requestPropertyNames("CreateChatCompletionRequest");
  for (const name of ["messages", "model", "temperature", "top_p", "user", "metadata", "tools", "response_format"]) {
    assert.ok(chat.includes(name), `${name} missing from the walk: ${chat.join(", ")}`);
  }
  assert.deepEqual(requestPropertyNames("CreateEmbeddingRequest"), ["dimensions", "encoding_format", "input", "model", "user"]);
});

for (const ep of ENDPOINTS) {
  describe(`${ep.name} parameter table`, () => {
    const spec = requestPropertyNames(ep.specSchema);
    const entries = Object.entries(ep.table);

    test(`every ${ep.specSchema} property is classified, and only spec properties are not extensions`, () => {
      const unclassified = spec.filter((name) => !(name in ep.table));
      assert.deepEqual(unclassified, [], `classify these in src/openai/parameters.ts: ${unclassified.join(", ")}`);
      const specSet = new Set(spec);
      const notInSpec = entries.filter(([name, p]) => !p.extension && !specSet.has(name)).map(([n]) => n);
      assert.deepEqual(notInSpec, [], "not in the spec: mark them extension: true");
      const extensionsInSpec = entries.filter(([name, p]) => p.extension && specSet.has(name)).map(([n]) => n);
      assert.deepEqual(extensionsInSpec, [], "now in the spec: drop extension: true and check the semantics match OpenAI's");
    });

    test("the table and the zod schema accept exactly the same parameters", () => {
      assert.deepEqual(sorted(Object.keys(ep.zodSchema.shape)), sorted(Object.keys(ep.table)));
    });

    test("each refused parameter with a non-neutral value is a 400 naming it; null is neutral", () => {
      const refusedNames = paramsHandled(ep.table, "refused");
      assert.deepEqual(sorted(Object.keys(ep.samples)), sorted(refusedNames), "test/helpers/parameterSamples.ts must have one sample per refused parameter");
      for (const name of refusedNames) {
        let caught: unknown;
        try {
          ep.parse({ ...ep.minimal, [name]: ep.samples[name] });
        } catch (err) {
          caught = err;
        }
        assert.ok(caught instanceof ApiError, `${name}: ${JSON.stringify(ep.samples[name])} was accepted`);
        assert.deepEqual({ code: caught.code, param: caught.param }, { code: "unsupported_parameter", param: name }, caught.message);
        assert.match(caught.message, new RegExp(`'${name}'`));
        assert.doesNotThrow(() => ep.parse({ ...ep.minimal, [name]: null }), `${name}: null must be neutral`);
      }
    });

    test("the ignored parameters are accepted (with a value) and listed in the README", () => {
      const bullet = readmeBullet("Accepted and ignored");
      for (const name of paramsHandled(ep.table, "ignored")) {
        assert.ok(bullet.includes(`\`${name}\``), `README "Accepted and ignored" does not list ${name}`);
        const value = name === "store" ? true : name === "metadata" ? { k: "v" } : "x";
        assert.doesNotThrow(() => ep.parse({ ...ep.minimal, [name]: value }), name);
      }
    });

    test("the refused parameters are listed in the README", () => {
      const bullet = readmeBullet("Refused");
      for (const name of paramsHandled(ep.table, "refused")) {
        assert.ok(bullet.includes(`\`${name}\``), `README "Refused" does not list ${name}`);
      }
    });
  });
}
