// Request validation shared by the OpenAI endpoints. Every request parameter is
// handled one of three ways, never silently wrong: implemented, refused unless
// neutral, or accepted and ignored; src/openai/parameters.ts is the table that
// says which. Parameters that are not in the OpenAI spec nor our extensions get
// a 400 `unknown_parameter`, as OpenAI does.
import { z } from "zod";
import { MAX_LOGIT_BIAS_ENTRIES, type SamplingParams } from "../../engine/index.js";
import { ApiError } from "../errors.js";
import { assertJsonLimits, assertLogitBiasSize } from "../middleware/jsonLimits.js";
import type { ParamTable } from "./parameters.js";

export const MAX_STOP_SEQUENCES = 4;
export const MAX_STOP_LENGTH = 256;
/** Free-form identifiers we accept and ignore (user, service_tier, prompt_cache_key...). */
export const MAX_IDENTIFIER_LENGTH = 512;
/** OpenAI's limits on `metadata`: 16 pairs, keys up to 64 characters, values up to 512. */
export const MAX_METADATA_PAIRS = 16;
export const MAX_METADATA_KEY_LENGTH = 64;
export const MAX_METADATA_VALUE_LENGTH = 512;
/** llama.cpp token ids and top_k are int32: a larger number would wrap around on its way to C. */
export const MAX_INT32 = 2_147_483_647;

// A custom message for the type error only: a schema-level `error` would also
// replace the messages of the .min/.max checks ("temperature: 3" must say the range).
const typeError = (message: string) => (issue: { code: string }) => (issue.code === "invalid_type" ? message : undefined);
const finite = () => z.number({ error: typeError("must be a number") }).refine(Number.isFinite, "must be a finite number");
const int = () => z.number({ error: typeError("must be an integer") }).int("must be an integer");
const identifier = () => z.string().max(MAX_IDENTIFIER_LENGTH);
// A logit_bias key is a token id. node-llama-cpp passes them as a Uint32Array, so
// "4294967296" would silently become token 0: bound them to llama_token's range.
const tokenIdKey = z
  .string()
  .regex(/^\d{1,10}$/, "keys must be token ids")
  .refine((k) => Number(k) <= MAX_INT32, "keys must be token ids");

/**
 * The one rule for objects nested inside a request's content (messages, their
 * content parts, their tool calls): unknown keys are ignored and dropped, as
 * OpenAI does. Clients send back what they received (`annotations`, `refusal`,
 * the SDKs' `parsed`, a stream's accumulated `index`...), and a message echoed
 * unchanged must be accepted. Known keys are still checked, so a wrong type for
 * one is a 400 naming it. The top level and the option objects (stream_options,
 * response_format, tools) stay strict: there an unknown key is a misspelt
 * parameter, and OpenAI refuses it too.
 */
export function tolerantObject<S extends z.ZodRawShape>(shape: S) {
  return z.object(shape).strip();
}

/** Sampling fields common to chat and completions, with OpenAI's ranges. */
export const samplingShape = {
  temperature: finite().min(0).max(2).nullish(),
  top_p: finite().min(0).max(1).nullish(),
  presence_penalty: finite().min(-2).max(2).nullish(),
  frequency_penalty: finite().min(-2).max(2).nullish(),
  // Bounded: its cost is paid at every sampled token (engine/promptBounds.ts).
  logit_bias: z
    .record(tokenIdKey, finite().min(-100).max(100))
    .refine((m) => Object.keys(m).length <= MAX_LOGIT_BIAS_ENTRIES, `must have at most ${MAX_LOGIT_BIAS_ENTRIES} entries`)
    .nullish(),
  seed: int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop: z.union([z.string().max(MAX_STOP_LENGTH), z.array(z.string().max(MAX_STOP_LENGTH)).max(MAX_STOP_SEQUENCES)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() }).strict().nullish(),
  max_tokens: int().min(1).nullish(),
  // llama.cpp-style extensions
  top_k: int().min(0).max(MAX_INT32).nullish(),
  min_p: finite().min(0).max(1).nullish(),
  // 0 divides the logits it penalises by zero: sampling degenerates (under a grammar it failed outright).
  repeat_penalty: finite().gt(0).max(10).nullish(),
  ignore_eos: z.boolean().nullish(),
  // accepted and ignored (no effect on a self-hosted server)
  user: identifier().nullish(),
  metadata: z
    .record(z.string().max(MAX_METADATA_KEY_LENGTH), z.string().max(MAX_METADATA_VALUE_LENGTH))
    .refine((m) => Object.keys(m).length <= MAX_METADATA_PAIRS, `must have at most ${MAX_METADATA_PAIRS} key-value pairs`)
    .nullish(),
  service_tier: identifier().nullish(),
  safety_identifier: identifier().nullish(),
  prompt_cache_key: identifier().nullish(),
  prompt_cache_retention: identifier().nullish(),
  prompt_cache_options: z.unknown().optional(),
  store: z.boolean().nullish(),
} as const;

export type SamplingFields = {
  temperature?: number | null;
  top_p?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  seed?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repeat_penalty?: number | null;
  ignore_eos?: boolean | null;
  stop?: string | string[] | null;
};

export function toSamplingParams(b: SamplingFields): SamplingParams {
  return {
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    topK: b.top_k ?? null,
    minP: b.min_p ?? null,
    seed: b.seed ?? null,
    presencePenalty: b.presence_penalty ?? 0,
    frequencyPenalty: b.frequency_penalty ?? 0,
    repeatPenalty: b.repeat_penalty ?? null,
    logitBias: b.logit_bias ?? {},
    ignoreEos: b.ignore_eos ?? false,
  };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop == null) return [];
  return (typeof stop === "string" ? [stop] : stop).filter((s) => s.length > 0);
}

export const isNullish = (v: unknown): boolean => v === null || v === undefined;

/** Throws 400 unsupported_parameter for the first parameter `table` refuses that `body` sets to a non-neutral value. */
export function refuseUnsupported(body: Record<string, unknown>, table: ParamTable): void {
  for (const [name, p] of Object.entries(table)) {
    if (p.handling === "refused" && name in body && !p.neutral(body[name])) {
      throw new ApiError("unsupported_parameter", `Unsupported parameter: '${name}' ${p.why}.`, name);
    }
  }
}

/** Renders a zod path the way OpenAI names nested parameters: messages[0].content. */
export function paramName(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError("invalid_body", "The request body must be a JSON object (send Content-Type: application/json).");
  }
  assertLogitBiasSize((body as Record<string, unknown>).logit_bias, MAX_LOGIT_BIAS_ENTRIES);
  // Before zod: its checks recurse, and it drops `__proto__` keys without a word.
  assertJsonLimits(body);
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  throw zodToApiError(result.error, body);
}

/** The value at a zod issue path, or undefined where the path leads nowhere. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/**
 * The first issue of a zod error as an ApiError naming the parameter. `value` is
 * what was validated; `prefix` is where it sits in the body (for a value
 * validated on its own, such as one content part).
 */
export function zodToApiError(error: z.ZodError, value: unknown, prefix: readonly PropertyKey[] = []): ApiError {
  const issue = error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const name = paramName([...prefix, ...issue.path, key]);
    return new ApiError("unknown_parameter", `Unrecognized request argument supplied: ${name}`, name);
  }
  const param = paramName([...prefix, ...issue.path]);
  // Read from the body itself: zod 4 leaves issue.input out, and a union
  // reports an absent value as invalid_union rather than invalid_type.
  const missing = valueAt(value, issue.path) === undefined;
  if (missing) {
    return new ApiError("missing_required_parameter", `Missing required parameter: '${param}'.`, param);
  }
  const code = issue.code === "invalid_type" ? "invalid_type" : "invalid_value";
  return new ApiError(code, `Invalid '${param}': ${issue.message}.`, param);
}

/** `chatcmpl-…`, `cmpl-…`; tool call ids are `call_…` (separator "_"), as OpenAI's. */
export function randomId(prefix: string, separator = "-"): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (let i = 0; i < 24; i++) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return `${prefix}${separator}${id}`;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
