// The typed, versioned IPC protocol between the front process (src/) and the
// engine worker (engine/worker.ts). This module and engine/index.ts are the
// only engine surface src/ may import; neither pulls in node-llama-cpp.
//
// Deltas are batched per engine step (one `step` message per decode), never
// one message per token: at 16 streams that is 16× fewer IPC messages.

// v2: EngineRequest.priority, the `tenants` message, fairness costs in WorkerOptions.
// v3: saved KV states (WorkerOptions.kvCache*, EngineStats.kv and prefixHits).
// v4: EngineRequest.grammar (structured output, tool calls); engine error code invalid_value;
//     chat tools, assistant tool calls and tool messages in the chat prompt.
// v5: n > 1 (EngineRequest.fork, EngineStats.prefilledTokens); logprobs
//     (EngineRequest.logprobs, Delta.logprobs); embeddings (the embed,
//     embedded and embed_failed messages, ModelInfo.embeddingSize).
// v6: the retain_tenants message (a deleted tenant's KV cache is dropped);
//     pause/resume (a request whose reader is behind stops stepping);
//     ModelInfo.maxTokenBytes (the front refuses prompts that surely cannot fit);
//     engine error code engine_crash_quarantine, EngineErrorPayload.retryAfterSeconds.
// v7: EngineRequest.priorityClass ("batch": idle capacity only, preemptible; engine error
//     code batch_preempted), WorkerOptions.maxBatchSlots.
export const PROTOCOL_VERSION = 7;

export type FinishReason = "stop" | "length";

// The chat vocabulary (messages, tool calls, tool definitions) is the models'
// (templates render it); the protocol carries it.
export { TOOL_CALL_CLOSE, TOOL_CALL_OPEN, type ChatMessage, type ToolCall, type ToolDefinition } from "../models/chatVocabulary.js";
import type { ChatMessage, ToolDefinition } from "../models/chatVocabulary.js";

export type EnginePrompt =
  | { kind: "text"; text: string }
  | { kind: "tokens"; tokens: number[] }
  | { kind: "chat"; messages: ChatMessage[]; tools?: ToolDefinition[] };

/** OpenAI sampling semantics, already validated and defaulted by the front. */
export interface SamplingParams {
  temperature: number;
  topP: number;
  topK: number | null;
  minP: number | null;
  /** null: the engine picks a random seed. */
  seed: number | null;
  presencePenalty: number;
  frequencyPenalty: number;
  repeatPenalty: number | null;
  /** token id → additive logit bias in [-100, 100]. */
  logitBias: Record<string, number>;
  ignoreEos: boolean;
}

export interface EngineRequest {
  /** Cache and fairness scope: slots never share KV state across tenants. */
  tenant: string;
  prompt: EnginePrompt;
  /** null: generate until the slot's context is full. */
  maxTokens: number | null;
  /**
   * The request parameter maxTokens came from (max_tokens, max_completion_tokens,
   * max_output_tokens), named by context_length_exceeded when the prompt fits
   * but the prompt plus maxTokens does not. Default "max_tokens".
   */
  maxTokensParam?: string;
  stop: string[];
  sampling: SamplingParams;
  /** Whether the prompt text should be emitted before the completion (completions `echo`). */
  echo: boolean;
  /**
   * Order among this tenant's own waiting requests: higher first, then arrival
   * (default 0; already capped by the front). Never orders across tenants:
   * that is the fair scheduler's job.
   */
  priority: number;
  /**
   * "batch" (the Batch API): admitted only when no interactive request waits
   * for a slot, at most WorkerOptions.maxBatchSlots at once, and ended with
   * batch_preempted when an interactive request needs its slot (the caller
   * retries it). Absent: "interactive".
   */
  priorityClass?: "interactive" | "batch";
  /** Constrains the output to a grammar (structured output, forced tool calls); absent: free text. */
  grammar?: GrammarSpec;
  /** One choice of a request with n > 1 choices (absent: a request of its own). */
  fork?: ForkSpec;
  /**
   * Log-probabilities wanted: how many top alternatives per token (0..MAX_TOP_LOGPROBS);
   * absent: none computed. Each sampled token's entry is sent with its delta.
   */
  logprobs?: number;
  /**
   * The W3C trace context (traceparent, tracestate) of the front's span for
   * this request: the worker's spans for it join that trace. Absent: not traced.
   */
  trace?: Record<string, string>;
}

/** The most top alternatives per token the engine computes (OpenAI's chat limit). */
export const MAX_TOP_LOGPROBS = 20;

/**
 * A token's log-probability under the model's raw distribution: the softmax
 * of its logits before any sampling transform (temperature, top-k/top-p,
 * penalties, logit_bias, grammar). Natural log, <= 0.
 */
export interface TopLogprob {
  /** The token's text, or `bytes:\xe2\x80` when its bytes are not valid UTF-8 alone; a control token's vocabulary text. */
  token: string;
  /** Its raw bytes; null for a token that writes no text (control tokens). */
  bytes: number[] | null;
  logprob: number;
}

/** One sampled token's entry: its own log-probability and the most likely tokens at its position. */
export interface TokenLogprob extends TopLogprob {
  /** The EngineRequest.logprobs most likely tokens, most likely first (fewer only if the vocabulary is smaller). */
  top: TopLogprob[];
}

/**
 * The n choices of one OpenAI request are n engine requests with the same
 * prompt, sampling and `group`, and `index` 0..n-1. The prompt is computed
 * once: index 0 (the leader) reads it, and the others wait until it has, then
 * start from a copy of its KV state and evaluate only the last prompt token
 * with their own sampler. Should the leader be gone (finished, cancelled,
 * failed) first, they are run as requests of their own. With a request seed s,
 * choice `index` samples with seed s + index (mod 2^32); without one, each
 * choice gets its own random seed.
 */
export interface ForkSpec {
  /** Unique to the OpenAI request (and prompt, for completions with several). */
  group: string;
  /** 0..n-1; 0 is the leader, submitted first. */
  index: number;
}

/**
 * An output grammar. `json`: any JSON object (response_format json_object).
 * `json_schema`: a value of `schema`, node-llama-cpp's GbnfJsonSchema subset
 * (the front translates and checks the client's JSON Schema into it), optionally
 * wrapped in literal text, once or repeated (Hermes-style <tool_call> blocks).
 * Generation ends with end-of-generation as soon as the grammar is complete.
 */
export type GrammarSpec =
  | { kind: "json" }
  | { kind: "json_schema"; schema: Record<string, unknown>; wrap?: GrammarWrap }
  // GBNF the front wrote itself (src/openai/structured/gbnf.ts), for what
  // node-llama-cpp's JSON grammar cannot carry (numeric bounds, formats); complete, wrap included.
  | { kind: "gbnf"; grammar: string };

export interface GrammarWrap {
  prefix: string;
  suffix: string;
  /** More than one wrapped value may follow, `separator` between them. */
  repeat: boolean;
  separator: string;
}

/**
 * How the engine shares itself among tenants. A tenant without a policy gets
 * DEFAULT_TENANT_POLICY (weight 1, no reservation, no cap).
 */
export interface TenantPolicy {
  id: string;
  /** Share of service when backlogged, relative to other tenants (finite, > 0). */
  weight: number;
  /** Slots kept for this tenant: others never take them, so it can always run this many requests (integer >= 0). */
  reservedSlots: number;
  /** Most slots the tenant may hold at once (integer >= 1); null: no cap. Requests beyond it wait. */
  maxSlots: number | null;
}

export const DEFAULT_TENANT_POLICY: Omit<TenantPolicy, "id"> = { weight: 1, reservedSlots: 0, maxSlots: null };

/** Virtual-token prices of the fair scheduler (per token, before division by the tenant's weight). */
export interface FairnessCosts {
  /** Per prompt token evaluated (prefill; tokens reused from the KV cache are free). */
  inputCost: number;
  /** Per token sampled. */
  outputCost: number;
}

export const DEFAULT_FAIRNESS_COSTS: FairnessCosts = { inputCost: 1, outputCost: 2 };

/** EngineOptions.followUpMs when WorkerOptions leaves it out. */
export const DEFAULT_FOLLOW_UP_MS = 10;

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Time the request waited for a slot, in ms (set by the engine on the final delta). */
  queueMs?: number;
  /**
   * From admission to a slot to the first sampled token, in ms: the prompt's
   * prefill, chunks shared with other steps included (final delta; absent
   * when the request ended before its first token).
   */
  prefillMs?: number;
}

export interface Delta {
  id: string;
  text: string;
  /** Tokens sampled since the previous delta for this request. */
  tokens: number;
  finish?: FinishReason;
  usage?: Usage;
  /**
   * With EngineRequest.logprobs: one entry per token sampled since the
   * previous delta, in order, except a final end-of-generation or template
   * stop token (it writes no text). Tokens sampled after a stop string began
   * keep their entries: they were generated and are counted in usage.
   */
  logprobs?: TokenLogprob[];
}

export type EngineErrorCode =
  | "context_length_exceeded"
  | "invalid_prompt"
  | "invalid_value"
  | "engine_restarted"
  | "engine_unavailable"
  | "engine_error"
  /** A batch-class request gave its slot to an interactive one; retry it. */
  | "batch_preempted"
  /** The client's requests were in flight when the worker crashed, repeatedly: refused for a while (crashQuarantine.ts). */
  | "engine_crash_quarantine";

export interface EngineErrorPayload {
  code: EngineErrorCode;
  message: string;
  param: string | null;
  /** When a retry may succeed, in seconds (sent as retry-after); absent: the code's default. */
  retryAfterSeconds?: number;
}

export interface ModelInfo {
  id: string;
  path: string;
  bytes: number;
  contextPerSlot: number;
  slots: number;
  trainedContext: number;
  vocabSize: number;
  /** The longest token text in UTF-8 bytes: a prompt longer than contextPerSlot × this many characters cannot fit (promptBounds.ts). */
  maxTokenBytes: number;
  /** Length of the model's embedding vectors (n_embd): what /v1/embeddings returns, and the only `dimensions` it accepts. */
  embeddingSize: number;
  /**
   * The special tokens the model adds around an input it evaluates (BOS before,
   * EOS after; null: none), unless the input already has them: how the front
   * bounds an embeddings request's tokens before the worker counts them.
   * Absent (older workers): assume both are added.
   */
  inputSpecials?: { bos: number | null; eos: number | null };
  chatTemplate: string;
  gpu: string | false;
  threads: number;
  synthetic: boolean;
}

export interface EngineStats {
  running: number;
  /** Running requests paused because the front holds as much of their output as it buffers (optional: absent from older workers). */
  paused?: number;
  waiting: number;
  slotsBusy: number;
  slotsIdle: number;
  kvCellsUsed: number;
  /**
   * Cells held by slots serving a request (optional: absent from older
   * workers). Idle slots' cells are a cache any request may evict, as vLLM
   * counts its cached free blocks as free.
   */
  kvCellsBusy?: number;
  steps: number;
  decodedTokens: number;
  /** Requests admitted with part of their prompt already in the KV cache (warm in a slot or restored). */
  prefixHits: number;
  /**
   * Prompt tokens evaluated since the worker started; tokens served from the
   * KV cache (reused, restored, or copied from another choice of the same
   * request) are not.
   */
  prefilledTokens: number;
  /** Saved KV states (--kv-cache-dir); null when saving is off. */
  kv: KvCacheStats | null;
  /** Seconds the engine loop has spent in each phase since the worker started (LoopPhase). */
  loopSeconds: Record<LoopPhase, number>;
}

/**
 * Where the engine loop's time goes, phase by phase of a step:
 * - wait: idling on purpose with work pending (--coalesce-ms, --follow-up-ms);
 * - admit: planning the step and admitting requests to slots, KV-store saves and restores included;
 * - step: the step's llama.cpp decode, sampling, and each token's bookkeeping;
 * - emit: handing the step's tokens to the front.
 * Time with nothing to do is in none of them.
 */
export type LoopPhase = "wait" | "admit" | "step" | "emit";

export interface KvCacheStats {
  /** States on disk now, and their bytes. */
  states: number;
  bytes: number;
  /** Since the worker started: states written, restored, and found unusable (deleted, prefix recomputed). */
  saved: number;
  restored: number;
  discarded: number;
}

export interface WorkerOptions {
  modelPath: string;
  modelId: string;
  slots: number;
  contextPerSlot: number;
  threads: number;
  gpu: "auto" | "off" | "cuda" | "vulkan";
  chatTemplateFile: string | null;
  /** Upper bound on tokens decoded in one step (decode tokens + prefill chunks). */
  stepTokens: number;
  /** Idle engine: wait this long for more arrivals before the first step. */
  coalesceMs: number;
  /** After a tenant's last request ended, wait up to this long for its next one before the next step (default DEFAULT_FOLLOW_UP_MS). */
  followUpMs?: number;
  /** Fair-scheduler price of a prompt token (default DEFAULT_FAIRNESS_COSTS.inputCost). */
  inputCost?: number;
  /** Fair-scheduler price of an output token (default DEFAULT_FAIRNESS_COSTS.outputCost). */
  outputCost?: number;
  /** Most batch-class requests running at once (default: every slot). */
  maxBatchSlots?: number;
  /** Directory where evicted slots' KV states are saved for later restore; null: never saved. */
  kvCacheDir?: string | null;
  /** Bound on the bytes kept in kvCacheDir (least recently used out first); 0 disables saving. */
  kvCacheMaxBytes?: number;
}

/** One input of an embeddings request: text (tokenized by the worker) or token ids of the served model. */
export type EmbedInput = { kind: "text"; text: string } | { kind: "tokens"; tokens: number[] };

/**
 * POST /v1/embeddings, already validated by the front (non-empty inputs, at
 * most 2048). The worker checks what needs the model: token ids against the
 * vocabulary, each input's length against the context.
 */
export interface EmbedRequest {
  /** Who asked (logs, future fairness); embeddings keep no cache, so nothing is shared across tenants. */
  tenant: string;
  inputs: EmbedInput[];
}

export type ToWorker =
  | { t: "submit"; id: string; req: EngineRequest }
  /** Embeds every input of `req` on the worker's embedding context; answered by `embedded` or `embed_failed`. */
  | { t: "embed"; id: string; req: EmbedRequest }
  /** Cancels a submitted generation or an embeddings request (ids are unique across both). */
  | { t: "cancel"; id: string }
  | { t: "stats" }
  /** Replaces every tenant policy; tenants not listed fall back to DEFAULT_TENANT_POLICY. */
  | { t: "tenants"; policies: TenantPolicy[] }
  /**
   * The tenants (EngineRequest.tenant values) that still exist: every KV
   * cache of any other, in slots and saved on disk, is dropped now, and what a
   * request of another tenant still running leaves in its slot when it ends.
   */
  | { t: "retain_tenants"; tenants: string[] }
  /**
   * The front holds as much of this request's output as it buffers per request:
   * the engine stops stepping it (keeping its slot) until `resume`.
   */
  | { t: "pause"; id: string }
  | { t: "resume"; id: string }
  | { t: "shutdown" };

export type FromWorker =
  | { t: "loading"; fraction: number }
  | { t: "ready"; v: number; model: ModelInfo }
  | { t: "accepted"; id: string; promptTokens: number; promptText: string | null }
  | { t: "rejected"; id: string; error: EngineErrorPayload }
  | { t: "step"; deltas: Delta[] }
  /**
   * An embeddings request done: one unit-length (L2) vector per input, in
   * input order, and the tokens each input was evaluated as (BOS included).
   */
  | { t: "embedded"; id: string; vectors: Float32Array[]; promptTokens: number[] }
  /**
   * An embeddings request that produced nothing: a bad input (invalid_prompt,
   * context_length_exceeded; `param` "input", the message names which) or a failed evaluation.
   */
  | { t: "embed_failed"; id: string; error: EngineErrorPayload }
  | { t: "stats"; stats: EngineStats }
  | { t: "fatal"; message: string };
