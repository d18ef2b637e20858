// What the engine does to llama.cpp, and nothing more: the narrow interface
// between the step loop (engineCore.ts) and the runtime that carries its plan
// out. llamaSequence.ts implements it over node-llama-cpp; the unit tests
// implement it with a fake, so that admission, swap, failure and stall paths
// run without a model.
//
// Only types live here: loading this file loads nothing.
import type { SequenceEvaluateOptions, Token } from "node-llama-cpp";
import type { Job } from "./job.js";
import type { TokenWithLogprobs } from "./logprobs.js";
import type { EngineErrorPayload, EngineRequest, KvCacheStats, TokenLogprob } from "./protocol.js";
import type { SavedStateView } from "./kvIndex.js";

/** What a saved-state store needs of a sequence (kvStore.ts); node-llama-cpp's LlamaContextSequence has it. */
export interface StateSequence {
  /** The tokens whose KV state the sequence holds, in order. */
  readonly contextTokens: Token[];
  clearHistory(): Promise<void>;
  saveStateToFile(file: string): Promise<unknown>;
  loadStateFromFile(file: string, options: { acceptRisk: true }): Promise<unknown>;
}

/** A token generator over one sequence: each next() decodes (the first time, the chunk it was given) and samples one token. */
export type TokenStream = AsyncGenerator<Token | TokenWithLogprobs, void, undefined | Token | Token[]>;

/** One slot's llama.cpp sequence. */
export interface EngineSequence extends StateSequence {
  /** Tokens held: contextTokens.length. */
  readonly nextTokenIndex: number;
  /** Keeps the first `tokens` tokens held and erases the rest (nothing when it holds no more). */
  keep(tokens: number): Promise<void>;
  /** Evaluates a prompt chunk that does not end the prompt: nothing is sampled. */
  prefill(tokens: Token[]): Promise<void>;
  /** Evaluates the prompt's final chunk and samples from then on, one token per next(); probabilities for logprobs. */
  generate(tokens: Token[], options: SequenceEvaluateOptions, probabilities: boolean): TokenStream;
  /**
   * Makes this sequence hold `source`'s first `tokens` tokens. False when that
   * is not exactly what it got: this sequence must then be cleared before use.
   */
  copyPrefix(source: EngineSequence, tokens: number): Promise<boolean>;
}

/** Where evicted slots' states are saved and restored from (kvStore.ts). */
/** A state written out: its size on disk and the tokens it holds. */
export interface SavedSize {
  bytes: number;
  tokens: number;
}

export interface SavedStates {
  /** The saved states, as planning sees them. */
  states(): Iterable<SavedStateView>;
  /**
   * Writes `seq`'s state out for `tenant` before the slot loses `lostTokens` of it, when that is worth keeping;
   * what it wrote (null: nothing; void: a store that does not say). `requestId`: the request whose admission
   * needs the slot, absent at shutdown (tracing: requestSpans.ts).
   */
  save(seq: StateSequence, tenant: string, lostTokens: number, requestId?: string): Promise<SavedSize | null | undefined>;
  /** Loads state `id` into `seq`; false (and `seq` clearable) when it is gone or unusable. `requestId`: the request it is for. */
  restore(seq: StateSequence, id: string, tenant: string, requestId?: string): Promise<boolean>;
  stats(): KvCacheStats;
  /** Finishes every pending save (at shutdown). */
  flush(): void;
}

/** A request made ready to run: its job, and the prompt text echo returns (null: no echo). */
export interface Prepared {
  job: Job;
  promptText: string | null;
}

/** The model side of the engine: its sequences, request preparation, and what sampling reports. */
export interface SequenceRuntime {
  /** One sequence per slot; a slot's index is its sequence's (batchOrder.ts). */
  readonly sequences: readonly EngineSequence[];
  /** End-of-generation tokens. */
  readonly eogTokens: ReadonlySet<Token>;
  /** The longest token text in UTF-8 bytes (promptBounds.ts). */
  readonly maxTokenBytes: number;
  /** Tokenizes and checks a request (job.ts prepareJob). */
  prepare(id: string, req: EngineRequest): Prepared | EngineErrorPayload;
  /** A sampled token's logprobs entry (logprobs.ts). */
  logprobEntry(token: Token, probabilities: Map<number, number> | undefined, top: number): TokenLogprob;
  /** Sampling failures since the last call, in order (samplingGuard.ts). */
  takeSamplingErrors(): string[];
  /** How long the sampling call that finished last took on its own (samplingGuard.ts). */
  lastSampleOwnMs(): number;
  /** After the loop has stopped: nothing samples any more. */
  dispose(): void;
}
