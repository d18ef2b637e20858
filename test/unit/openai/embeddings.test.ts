// POST /v1/embeddings at the edge, without a model: which inputs are accepted
// and how the refused ones are named, the model-dependent `dimensions`
// refusal, and the response body in both encodings.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import {
  embeddingResponse,
  embedInputs,
  float32Base64,
  MAX_EMBEDDING_INPUTS,
  parseEmbeddingRequest,
  refuseEmbeddingParameters,
} from "../../../src/openai/embeddings/protocol.js";
import { assertMatchesSpec } from "../../helpers/openapi.js";

/** The ApiError `fn` throws, as {code, param}, with its message checked against `message`. */
function refusal(fn: () => unknown, message?: RegExp): { code: string; param: string | null } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    if (message) assert.match(err.message, message);
    assert.equal(err.status, 400);
    return { code: err.code, param: err.param };
  }
  assert.fail("accepted");
}

const parseInputs = (input: unknown) => embedInputs(parseEmbeddingRequest({ model: "m", input }).input);

describe("embedInputs", () => {
  test("the four input forms become one engine input per string or token array", () => {
    assert.deepEqual(parseInputs("hi"), [{ kind: "text", text: "hi" }]);
    assert.deepEqual(parseInputs(["a", "b"]), [
      { kind: "text", text: "a" },
      { kind: "text", text: "b" },
    ]);
    assert.deepEqual(parseInputs([1, 2, 3]), [{ kind: "tokens", tokens: [1, 2, 3] }]);
    assert.deepEqual(parseInputs([[1, 2], [3]]), [
      { kind: "tokens", tokens: [1, 2] },
      { kind: "tokens", tokens: [3] },
    ]);
    assert.equal(parseInputs(Array.from({ length: MAX_EMBEDDING_INPUTS }, () => "x")).length, 2048);
  });

  test("empty strings and arrays, 2049 elements, wrong and mixed types: 400 naming input, the message naming the element", () => {
    const cases: Array<[unknown, RegExp, string]> = [
      ["", /must not be an empty string/, "invalid_value"],
      [[], /must not be an empty array/, "invalid_value"],
      [["a", ""], /'input\[1\]' must not be an empty string/, "invalid_value"],
      [[[1], []], /'input\[1\]' must not be an empty array/, "invalid_value"],
      [Array.from({ length: 2049 }, () => "x"), /2049 elements; an array may have at most 2048/, "invalid_value"],
      [Array.from({ length: 2049 }, () => 7), /2049 elements/, "invalid_value"],
      [[1, "a"], /'input\[1\]' must be a token id/, "invalid_value"],
      [[1, -1], /'input\[1\]' must be a token id/, "invalid_value"],
      [[1, 2.5], /'input\[1\]' must be a token id/, "invalid_value"],
      [[1, 2 ** 31], /'input\[1\]' must be a token id/, "invalid_value"],
      [
        [
          [1, 2],
          [3, "x"],
        ],
        /'input\[1\]\[1\]' must be a token id/,
        "invalid_value",
      ],
      [["a", 1], /'input\[1\]' is 1/, "invalid_type"],
      [["a", ["b"]], /'input\[1\]'/, "invalid_type"],
      [[{ text: "a" }], /'input\[0\]'/, "invalid_type"],
      [[null], /'input\[0\]' is null/, "invalid_type"],
    ];
    for (const [input, message, code] of cases) {
      assert.deepEqual(
        refusal(() => parseInputs(input), message),
        { code, param: "input" },
        JSON.stringify(input).slice(0, 60),
      );
    }
  });

  test("input of the wrong type or missing, and a bad encoding_format: 400 naming the parameter", () => {
    // A value no form of the union accepts is invalid_value, as completions' `prompt`.
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m", input: 5 }), /must be a string, an array of strings/),
      { code: "invalid_value", param: "input" },
    );
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m", input: { a: 1 } })),
      { code: "invalid_value", param: "input" },
    );
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m" })),
      { code: "missing_required_parameter", param: "input" },
    );
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m", input: "a", encoding_format: "int8" }), /'float' or 'base64'/),
      {
        code: "invalid_value",
        param: "encoding_format",
      },
    );
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m", input: "a", dimensions: "64" })),
      { code: "invalid_type", param: "dimensions" },
    );
    assert.deepEqual(
      refusal(() => parseEmbeddingRequest({ model: "m", input: "a", extra: 1 })),
      { code: "unknown_parameter", param: "extra" },
    );
  });
});

describe("dimensions", () => {
  test("accepted only when it is the model's embedding size", () => {
    const req = (dimensions: unknown) => parseEmbeddingRequest({ model: "m", input: "a", dimensions });
    assert.doesNotThrow(() => refuseEmbeddingParameters(req(64), 64));
    assert.doesNotThrow(() => refuseEmbeddingParameters(req(null), 64));
    assert.deepEqual(
      refusal(() => refuseEmbeddingParameters(req(32), 64), /'dimensions' is only supported with this model's embedding size, 64/),
      {
        code: "unsupported_parameter",
        param: "dimensions",
      },
    );
    assert.deepEqual(
      refusal(() => refuseEmbeddingParameters(req(128), 64)),
      { code: "unsupported_parameter", param: "dimensions" },
    );
  });
});

describe("embeddingResponse", () => {
  const vectors = [new Float32Array([0.6, -0.8]), new Float32Array([1, 0])];

  test("float: CreateEmbeddingResponse with the float32 values, index in input order, usage", () => {
    const body = embeddingResponse("m", vectors, 7, "float");
    assertMatchesSpec("CreateEmbeddingResponse", body);
    assert.deepEqual(
      body.data.map((d) => d.index),
      [0, 1],
    );
    assert.deepEqual(body.data[0]!.embedding, [Math.fround(0.6), Math.fround(-0.8)]);
    assert.deepEqual(body.usage, { prompt_tokens: 7, total_tokens: 7 });
    assert.equal(body.model, "m");
  });

  test("base64: little-endian float32 bytes that decode to the float response's numbers", () => {
    const b64 = embeddingResponse("m", vectors, 7, "base64");
    const float = embeddingResponse("m", vectors, 7, "float");
    for (let i = 0; i < vectors.length; i++) {
      const bytes = Buffer.from(b64.data[i]!.embedding as string, "base64");
      assert.equal(bytes.length, 8);
      const decoded = Array.from({ length: 2 }, (_, j) => bytes.readFloatLE(j * 4));
      assert.deepEqual(decoded, float.data[i]!.embedding);
    }
    // Known bytes: 1.0f is 00 00 80 3f little-endian.
    assert.equal(float32Base64(new Float32Array([1])), Buffer.from([0, 0, 0x80, 0x3f]).toString("base64"));
  });
});
