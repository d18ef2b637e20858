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
export const PROTOCOL_VERSION = 4;

export type FinishReason = "stop" | "length";

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
  /** assistant: the tool calls it made, rendered after its content. */
  toolCalls?: ToolCall[];
}

export interface ToolCall {
  name: string;
  /** JSON text of the arguments object, as the model wrote it. */
  arguments: string;
}

/**
 * Hermes-style tool calls (models/toolPrompt.ts): the prompt asks for them in
 * these tags, the forced-call grammar writes them, the front parses them.
 */
export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

/** A function the model may call, listed in the chat prompt. */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON Schema of the arguments object, as the client gave it. */
  parameters: Record<string, unknown>;
}

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
  /** Constrains the output to a grammar (structured output, forced tool calls); absent: free text. */
  grammar?: GrammarSpec;
}

/**
 * An output grammar. `json`: any JSON object (response_format json_object).
 * `json_schema`: a value of `schema`, node-llama-cpp's GbnfJsonSchema subset
 * (the front translates and checks the client's JSON Schema into it), optionally
 * wrapped in literal text, once or repeated (Hermes-style <tool_call> blocks).
 * Generation ends with end-of-generation as soon as the grammar is complete.
 */
export type GrammarSpec = { kind: "json" } | { kind: "json_schema"; schema: Record<string, unknown>; wrap?: GrammarWrap };

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
}

export type EngineErrorCode =
  | "context_length_exceeded"
  | "invalid_prompt"
  | "invalid_value"
  | "engine_restarted"
  | "engine_unavailable"
  | "engine_error";

export interface EngineErrorPayload {
  code: EngineErrorCode;
  message: string;
  param: string | null;
}

export interface ModelInfo {
  id: string;
  path: string;
  bytes: number;
  contextPerSlot: number;
  slots: number;
  trainedContext: number;
  vocabSize: number;
  chatTemplate: string;
  gpu: string | false;
  threads: number;
  synthetic: boolean;
}

export interface EngineStats {
  running: number;
  waiting: number;
  slotsBusy: number;
  slotsIdle: number;
  kvCellsUsed: number;
  steps: number;
  decodedTokens: number;
  /** Requests admitted with part of their prompt already in the KV cache (warm in a slot or restored). */
  prefixHits: number;
  /** Saved KV states (--kv-cache-dir); null when saving is off. */
  kv: KvCacheStats | null;
}

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
  /** Fair-scheduler price of a prompt token (default DEFAULT_FAIRNESS_COSTS.inputCost). */
  inputCost?: number;
  /** Fair-scheduler price of an output token (default DEFAULT_FAIRNESS_COSTS.outputCost). */
  outputCost?: number;
  /** Directory where evicted slots' KV states are saved for later restore; null: never saved. */
  kvCacheDir?: string | null;
  /** Bound on the bytes kept in kvCacheDir (least recently used out first); 0 disables saving. */
  kvCacheMaxBytes?: number;
}

export type ToWorker =
  | { t: "submit"; id: string; req: EngineRequest }
  | { t: "cancel"; id: string }
  | { t: "stats" }
  /** Replaces every tenant policy; tenants not listed fall back to DEFAULT_TENANT_POLICY. */
  | { t: "tenants"; policies: TenantPolicy[] }
  | { t: "shutdown" };

export type FromWorker =
  | { t: "loading"; fraction: number }
  | { t: "ready"; v: number; model: ModelInfo }
  | { t: "accepted"; id: string; promptTokens: number; promptText: string | null }
  | { t: "rejected"; id: string; error: EngineErrorPayload }
  | { t: "step"; deltas: Delta[] }
  | { t: "stats"; stats: EngineStats }
  | { t: "fatal"; message: string };
