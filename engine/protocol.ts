// The typed, versioned IPC protocol between the front process (src/) and the
// engine worker (engine/worker.ts). This module and engine/index.ts are the
// only engine surface src/ may import; neither pulls in node-llama-cpp.
//
// Deltas are batched per engine step (one `step` message per decode), never
// one message per token: at 16 streams that is 16× fewer IPC messages.

// v2: EngineRequest.priority, the `tenants` message, fairness costs in WorkerOptions.
export const PROTOCOL_VERSION = 2;

export type FinishReason = "stop" | "length";

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

export type EnginePrompt =
  | { kind: "text"; text: string }
  | { kind: "tokens"; tokens: number[] }
  | { kind: "chat"; messages: ChatMessage[] };

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
