// How each top-level request parameter of the OpenAI endpoints is handled:
// one table per endpoint, the single place that classifies them. Every
// parameter of the OpenAI spec's request schema must appear here (the spec walk
// in test/unit/openai/parameters.test.ts reads shared/openai-openapi/openapi.json
// and fails when the spec gains one), and so must every key the endpoint's zod
// schema accepts. The refusals the endpoints apply are read from these tables.
//
//   implemented: OpenAI semantics, validated by zod and carried to the engine;
//   refused:     400 `unsupported_parameter` naming it, unless `neutral(value)`;
//   ignored:     accepted and documented (README, "Accepted and ignored") as having no effect.
//
// `extension: true` marks a parameter that is not in OpenAI's schema for the
// endpoint (llama.cpp sampling knobs, `priority`, chat's ignored identifiers
// accepted on completions too).
import { isNullish } from "./common.js";

export type ParamHandling =
  | { handling: "implemented"; extension?: true }
  | { handling: "ignored"; extension?: true }
  | {
      handling: "refused";
      extension?: true;
      /** True when the value means the same as leaving the parameter out. */
      neutral: (value: unknown) => boolean;
      /** Completes "Unsupported parameter: 'name' …". */
      why: string;
    };

export type ParamTable = Readonly<Record<string, ParamHandling>>;

const implemented: ParamHandling = { handling: "implemented" };
const implementedExtension: ParamHandling = { handling: "implemented", extension: true };
const ignored: ParamHandling = { handling: "ignored" };
const ignoredExtension: ParamHandling = { handling: "ignored", extension: true };
const refused = (why: string, neutral: (v: unknown) => boolean = isNullish): ParamHandling => ({ handling: "refused", neutral, why });

const onlyOne = (v: unknown) => isNullish(v) || v === 1;

/** Sampling and stream parameters both endpoints implement (OpenAI's). */
const SAMPLING = {
  temperature: implemented,
  top_p: implemented,
  presence_penalty: implemented,
  frequency_penalty: implemented,
  logit_bias: implemented,
  seed: implemented,
  stop: implemented,
  stream: implemented,
  stream_options: implemented,
  max_tokens: implemented,
} as const;

/** llama.cpp-style sampling knobs and llamux's scheduling priority. */
const EXTENSIONS = {
  top_k: implementedExtension,
  min_p: implementedExtension,
  repeat_penalty: implementedExtension,
  ignore_eos: implementedExtension,
  priority: implementedExtension,
} as const;

/** Identifiers and hints that have no effect on a self-hosted server. */
const IDENTIFIERS = [
  "user",
  "metadata",
  "store",
  "service_tier",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_retention",
  "prompt_cache_options",
] as const;

/** POST /v1/chat/completions (CreateChatCompletionRequest). */
export const CHAT_COMPLETION_PARAMETERS: ParamTable = {
  model: implemented,
  messages: implemented,
  max_completion_tokens: implemented,
  ...SAMPLING,
  ...EXTENSIONS,
  n: implemented,
  logprobs: implemented,
  top_logprobs: implemented,
  response_format: implemented,
  modalities: refused('only supports ["text"]', (v) => isNullish(v) || (Array.isArray(v) && v.every((m) => m === "text"))),
  tools: implemented,
  tool_choice: implemented,
  parallel_tool_calls: implemented,
  functions: refused("(function calling) is not supported"),
  function_call: refused("(function calling) is not supported"),
  audio: refused("is not supported: this server produces text only"),
  prediction: refused("(predicted outputs) is not supported"),
  web_search_options: refused("is not supported: this server has no web search"),
  reasoning_effort: refused("is not supported with this model"),
  verbosity: refused("is not supported with this model"),
  moderation: refused("is not supported"),
  ...Object.fromEntries(IDENTIFIERS.map((name) => [name, ignored])),
};

/** POST /v1/completions (CreateCompletionRequest). */
export const COMPLETION_PARAMETERS: ParamTable = {
  model: implemented,
  prompt: implemented,
  echo: implemented,
  ...SAMPLING,
  ...EXTENSIONS,
  n: implemented,
  best_of: refused("is only supported with the value 1", onlyOne),
  logprobs: implemented,
  suffix: refused("(fill-in-the-middle) is not supported", (v) => isNullish(v) || v === ""),
  user: ignored,
  // Not in the legacy endpoint's schema; accepted as on chat so one client config serves both.
  ...Object.fromEntries(IDENTIFIERS.filter((name) => name !== "user").map((name) => [name, ignoredExtension])),
};

/**
 * POST /v1/embeddings (CreateEmbeddingRequest), for a model whose vectors have
 * `embeddingSize` dimensions. `dimensions` is neutral only when it asks for
 * exactly that size: the served models are not trained for shortened
 * (Matryoshka) vectors, so a cut vector would not mean what OpenAI's does.
 */
export function embeddingParameters(embeddingSize: number): ParamTable {
  return {
    model: implemented,
    input: implemented,
    encoding_format: implemented,
    dimensions: refused(`is only supported with this model's embedding size, ${embeddingSize}`, (v) => isNullish(v) || v === embeddingSize),
    user: ignored,
  };
}

/** Names of the parameters of `table` handled as `handling`. */
export function paramsHandled(table: ParamTable, handling: ParamHandling["handling"]): string[] {
  return Object.entries(table)
    .filter(([, p]) => p.handling === handling)
    .map(([name]) => name);
}
