// OpenAI sampling parameters → node-llama-cpp evaluate options.
//
// node-llama-cpp's own defaults (topK 40, topP 0.95, temperature 0) are not
// OpenAI's (no top-k, top_p 1, temperature 1), so every field is set here.
// Presence and frequency penalties follow OpenAI (and vLLM): they count the
// tokens generated so far, not the prompt.
import { LlamaGrammarEvaluationState, TokenBias, type LlamaGrammar, type LlamaModel, type SequenceEvaluateOptions, type Token } from "node-llama-cpp";
import type { SamplingParams } from "./protocol.js";

const UINT32 = 2 ** 32;

/** Any JS integer seed → the sampler's unsigned 32-bit seed, deterministically. */
export function samplerSeed(seed: number | null): number {
  if (seed === null) return Math.floor(Math.random() * UINT32);
  return ((seed % UINT32) + UINT32) % UINT32;
}

/**
 * The seed of choice `index` of a request seeded `seed` (n > 1): seed + index
 * as the sampler reads it, so choice j samples as a lone request seeded s + j
 * would, even where s + j is past the safe-integer range; with no seed, each
 * choice gets its own random one.
 */
export function choiceSeed(seed: number | null, index: number): number {
  return (samplerSeed(seed) + index) % UINT32;
}

/**
 * A banned token's bias under a grammar. -Infinity there can leave no token
 * both allowed and possible (ban every token that writes "}" and the object
 * cannot close): llama.cpp then fails to accept the sampled token and the
 * worker dies with every request in it. A finite ban loses to any token the
 * grammar allows and is only taken when the grammar allows nothing else.
 */
export const GRAMMAR_BAN_LOGIT = -1e9;

export interface SamplingSetup {
  options: SequenceEvaluateOptions;
  /** The generated-token list the penalties read; the engine appends to it. */
  generated: Token[];
}

export function buildEvaluateOptions(
  model: LlamaModel,
  params: SamplingParams,
  eogTokens: readonly Token[],
  maxTokens: number,
  /** Constrains every sampled token (structured output); each request gets its own evaluation state. */
  grammar?: LlamaGrammar,
): SamplingSetup {
  const generated: Token[] = [];
  const options: SequenceEvaluateOptions = {
    temperature: params.temperature,
    topP: params.topP,
    topK: samplerTopK(params.topK),
    minP: params.minP ?? 0,
    seed: samplerSeed(params.seed),
    yieldEogToken: true,
  };
  if (grammar) options.grammarEvaluationState = new LlamaGrammarEvaluationState({ model, grammar });
  const penalise = params.presencePenalty !== 0 || params.frequencyPenalty !== 0 || (params.repeatPenalty ?? 1) !== 1;
  if (penalise) {
    options.repeatPenalty = {
      punishTokens: () => generated,
      maxPunishTokens: Math.max(64, maxTokens),
      penalty: params.repeatPenalty ?? 1,
      presencePenalty: params.presencePenalty,
      frequencyPenalty: params.frequencyPenalty,
    };
  }
  const biasEntries = Object.entries(params.logitBias);
  if (biasEntries.length > 0 || params.ignoreEos) {
    const bias = new TokenBias(model.tokenizer);
    const ban = grammar ? GRAMMAR_BAN_LOGIT : -Infinity;
    for (const [token, value] of biasEntries) setTokenBias(model, bias, Number(token) as Token, value <= -100 ? ban : value);
    if (params.ignoreEos) for (const t of eogTokens) setTokenBias(model, bias, t, ban);
    options.tokenBias = bias;
  }
  return { options, generated };
}

/**
 * node-llama-cpp's topK for a request's top_k. Only a positive top_k gets a
 * top-k sampler: node-llama-cpp turns 0 into k = the vocabulary size, which
 * keeps every token but sorts all of them at every token (measured ~2.5 ms
 * for 32k candidates, the largest cost after the decode itself), and
 * undefined into its default of 40. null is the value it drops from the
 * sampler config (removeNullFields in LlamaContext.js, 3.22.1), so the chain
 * has no top-k at all, as llama.cpp's own top_k = 0 means: the other
 * samplers (top-p, min-p, the final draw) work on unsorted candidates.
 * Typed number because SequenceEvaluateOptions does not admit null.
 */
export function samplerTopK(topK: number | null): number {
  return topK !== null && topK > 0 ? topK : (null as unknown as number);
}

/**
 * Sets one token's additive logit bias (-Infinity bans it).
 *
 * node-llama-cpp's TokenBias.set() silently skips end-of-generation tokens
 * (evaluator/TokenBias.js in 3.22.1), which made `logit_bias` on </s> and
 * `ignore_eos` no-ops. The per-token map it keeps is exactly what the context
 * hands to llama.cpp, so EOG entries are written to it directly; if that
 * private map ever changes shape this throws rather than ignore the bias.
 */
export function setTokenBias(model: LlamaModel, bias: TokenBias, token: Token, logit: number): void {
  if (!model.isEogToken(token)) {
    bias.set(token, logit === -Infinity ? "never" : { logit });
    return;
  }
  const biases = (bias as unknown as { _biases?: unknown })._biases;
  if (!(biases instanceof Map)) throw new Error("node-llama-cpp's TokenBias changed: cannot bias end-of-generation tokens");
  biases.set(token, logit);
}

/** Every end-of-generation token id of the vocabulary (EOS, EOT, ...), found once per model. */
export function findEogTokens(model: LlamaModel): Token[] {
  const eog: Token[] = [];
  const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
  for (let t = 0; t < vocab; t++) if (model.isEogToken(t as Token)) eog.push(t as Token);
  return eog;
}
