// POST /v1/embeddings: request schema, its inputs as the engine takes them, and
// the response body (CreateEmbeddingResponse).
import os from "node:os";
import { z } from "zod";
import type { EmbedInput } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { MAX_IDENTIFIER_LENGTH, MAX_INT32, parseBody, refuseUnsupported } from "../common.js";
import { embeddingParameters } from "../parameters.js";

/** OpenAI's bound on `input` as an array: inputs per request (strings, token arrays), or token ids of a single input. */
export const MAX_EMBEDDING_INPUTS = 2048;

const INPUT_KINDS = "a string, an array of strings, an array of token ids, or an array of token-id arrays";

export const embeddingRequestSchema = z
  .object({
    model: z.string({ error: "must be a string" }),
    // The outer shape only: the elements are checked by embedInputs, whose
    // messages say which element is wrong (a zod union would only say "invalid").
    input: z.union([z.string(), z.array(z.unknown())], { error: `must be ${INPUT_KINDS}` }),
    encoding_format: z.enum(["float", "base64"], { error: "must be 'float' or 'base64'" }).nullish(),
    dimensions: z.number({ error: "must be an integer" }).int("must be an integer").min(1).nullish(),
    user: z.string().max(MAX_IDENTIFIER_LENGTH).nullish(),
  })
  .strict();

export type EmbeddingRequest = z.infer<typeof embeddingRequestSchema>;

/** The body's shape; the refusals that depend on the model come from refuseEmbeddingParameters. */
export function parseEmbeddingRequest(body: unknown): EmbeddingRequest {
  return parseBody(embeddingRequestSchema, body);
}

/** 400 unsupported_parameter for what the table refuses with this model (`dimensions` ≠ its size). */
export function refuseEmbeddingParameters(req: EmbeddingRequest, embeddingSize: number): void {
  refuseUnsupported(req as Record<string, unknown>, embeddingParameters(embeddingSize));
}

const invalid = (message: string) => new ApiError("invalid_value", `Invalid 'input': ${message}`, "input");

// The spec bounds only the outer array; a token array in a list is bounded by the context (checked by the worker).
function tokenIds(value: unknown[], where: string): number[] {
  if (value.length === 0) throw invalid(`'${where}' must not be an empty array.`);
  for (let j = 0; j < value.length; j++) {
    const t = value[j];
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > MAX_INT32) {
      throw invalid(`'${where}[${j}]' must be a token id (an integer ≥ 0), got ${JSON.stringify(t)}.`);
    }
  }
  return value as number[];
}

/**
 * The request's inputs, one engine input each. Every error is a 400 with
 * param "input" whose message names the element (input[3]): empty strings
 * and arrays, arrays over OpenAI's 2048, mixed or wrong element types.
 */
export function embedInputs(input: EmbeddingRequest["input"]): EmbedInput[] {
  if (typeof input === "string") {
    if (input === "") throw invalid("must not be an empty string.");
    return [{ kind: "text", text: input }];
  }
  if (input.length === 0) throw invalid("must not be an empty array.");
  if (input.length > MAX_EMBEDDING_INPUTS) throw invalid(`has ${input.length} elements; an array may have at most ${MAX_EMBEDDING_INPUTS}.`);
  const first = input[0];
  if (typeof first === "number") return [{ kind: "tokens", tokens: tokenIds(input, "input") }];
  return input.map((x, i): EmbedInput => {
    if (typeof first === "string" && typeof x === "string") {
      if (x === "") throw invalid(`'input[${i}]' must not be an empty string.`);
      return { kind: "text", text: x };
    }
    if (Array.isArray(first) && Array.isArray(x)) return { kind: "tokens", tokens: tokenIds(x, `input[${i}]`) };
    throw new ApiError("invalid_type", `Invalid 'input': must be ${INPUT_KINDS}; 'input[${i}]' is ${JSON.stringify(x)?.slice(0, 40)}.`, "input");
  });
}

/** CreateEmbeddingResponse. `vectors` are unit-length, one per input in input order. */
export function embeddingResponse(
  model: string,
  vectors: readonly Float32Array[],
  promptTokens: number,
  format: "float" | "base64",
): {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
} {
  return {
    object: "list",
    data: vectors.map((v, index) => ({ object: "embedding", index, embedding: format === "base64" ? float32Base64(v) : Array.from(v) })),
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

/**
 * Little-endian float32 bytes in base64: what OpenAI sends for
 * encoding_format "base64" and its SDKs decode (Float32Array over the bytes).
 * `float` returns the same float32 values, so both formats carry the same numbers.
 */
export function float32Base64(v: Float32Array): string {
  if (os.endianness() === "LE") return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
  const bytes = new DataView(new ArrayBuffer(v.length * 4));
  for (let i = 0; i < v.length; i++) bytes.setFloat32(i * 4, v[i]!, true);
  return Buffer.from(bytes.buffer).toString("base64");
}
