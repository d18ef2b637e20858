// One request inside the engine: its prompt and sampling set up at submit
// (prepareJob), then the per-token output processing of every step
// (acceptToken: end of generation, incremental detokenization, stop strings,
// max_tokens) and its last delta. The engine (engineCore.ts) decides when a job
// runs and in which slot; this module decides what its tokens mean.
import type { LlamaGrammar, LlamaModel, SequenceEvaluateOptions, Token } from "node-llama-cpp";
import { tokenizeText, type ChatTemplate } from "../models/chatTemplate.js";
import { IncrementalDetokenizer } from "./detokenizer.js";
import { grammarFor } from "./grammar.js";
import type { Delta, EngineErrorPayload, EngineRequest, FinishReason, ForkSpec, GrammarSpec, TokenLogprob } from "./protocol.js";
import type { SampledJob } from "./sampleBudget.js";
import { buildEvaluateOptions, choiceSeed } from "./sampling.js";
import { refuseEarly } from "./promptBounds.js";
import type { EngineSequence, TokenStream } from "./sequence.js";
import { StopMatcher } from "./stops.js";

export interface Slot {
  index: number;
  seq: EngineSequence;
  tenant: string | null;
  /** Tokens whose KV state the sequence holds (mirrors seq.contextTokens between requests). */
  cached: Token[];
  busy: boolean;
  lastUsed: number;
}

export interface Job extends SampledJob {
  id: string;
  tenant: string;
  priority: number;
  /** Priority class "batch" (EngineRequest.priorityClass). */
  batch: boolean;
  prompt: Token[];
  maxTokens: number;
  options: SequenceEvaluateOptions;
  generated: Token[];
  stopTokens: ReadonlySet<Token>;
  ignoreEos: boolean;
  detok: IncrementalDetokenizer;
  stops: StopMatcher;
  slot: Slot | null;
  /** Prompt tokens already in the slot's KV cache. */
  evaluated: number;
  cachedTokens: number;
  /** Jobs with logprobs are evaluated with metadata (logprobs.ts); the others yield bare tokens. */
  gen: TokenStream | null;
  cancelled: boolean;
  finish?: FinishReason;
  /** A stop string matched: everything after it, held text included, is dropped. */
  stopMatched: boolean;
  /** Output accumulated this step, sent as one delta. */
  text: string;
  newTokens: number;
  /** performance.now() at submit; queueMs is the wait from there to a slot. */
  submittedAtMs: number;
  queueMs: number;
  /** Admission to the first sampled token (submittedAtMs + queueMs is the admission); null until then. */
  prefillMs: number | null;
  /** One choice of an n > 1 request (fork.ts); null for a request of its own. */
  fork: ForkSpec | null;
  /** Top alternatives wanted per token (EngineRequest.logprobs); null: no logprobs. */
  topLogprobs: number | null;
  /** Entries of the tokens sampled since the last delta (with topLogprobs only). */
  logprobs: TokenLogprob[];
  /** The output grammar the job samples under (sampleBudget.ts); null: none. */
  grammarSpec: GrammarSpec | null;
}

export interface JobContext {
  model: LlamaModel;
  template: ChatTemplate;
  contextPerSlot: number;
  eogTokens: readonly Token[];
  /** Tokens in the vocabulary (0: unknown). */
  vocabSize: number;
  /** The longest token text in UTF-8 bytes (promptBounds.ts). */
  maxTokenBytes: number;
}

/** Tokenizes and checks one request, and sets up its sampling and output processing. */
export function prepareJob(c: JobContext, id: string, req: EngineRequest): Job | EngineErrorPayload {
  // Before tokenizing: a prompt that surely cannot fit is refused at the cost of counting its characters.
  const early = refuseEarly(req, { contextPerSlot: c.contextPerSlot, vocabSize: c.vocabSize, maxTokenBytes: c.maxTokenBytes });
  if (early) return early;
  let prompt: Token[];
  let stopStrings = req.stop;
  let stopTokens: ReadonlySet<Token> = new Set();
  if (req.prompt.kind === "chat") {
    const rendered = c.template.render(req.prompt.messages, req.prompt.tools);
    prompt = rendered.tokens;
    // Under a grammar the turn ends with end-of-generation once the grammar is
    // complete; a template stop text typed inside a JSON string must not cut it.
    stopStrings = req.grammar ? req.stop : [...req.stop, ...rendered.stopStrings];
    stopTokens = c.template.stopTokenIds;
  } else if (req.prompt.kind === "text") {
    prompt = tokenizeText(c.model, req.prompt.text);
  } else {
    prompt = req.prompt.tokens as Token[];
    const vocab = c.vocabSize > 0 ? c.vocabSize : Infinity;
    if (prompt.some((t) => t >= vocab)) {
      return { code: "invalid_prompt", param: "prompt", message: `Token ids in 'prompt' must be below the vocabulary size ${vocab}.` };
    }
  }
  if (prompt.length === 0) {
    return { code: "invalid_prompt", param: "prompt", message: "The prompt is empty: it produced no tokens." };
  }
  const ctx = c.contextPerSlot;
  const maxTokens = req.maxTokens ?? ctx - prompt.length;
  if (prompt.length + Math.max(1, maxTokens) > ctx) {
    const asked = req.maxTokens === null ? "" : ` + ${req.maxTokens} max_tokens`;
    return {
      code: "context_length_exceeded",
      // The prompt alone fits: what the client must reduce is its max tokens.
      param: prompt.length < ctx && req.maxTokens !== null ? (req.maxTokensParam ?? "max_tokens") : req.prompt.kind === "chat" ? "messages" : "prompt",
      message:
        `This model's maximum context length is ${ctx} tokens. However, you requested ` +
        `${prompt.length + (req.maxTokens ?? 0)} tokens (${prompt.length} in the prompt${asked}). ` +
        "Please reduce the length of the prompt or max_tokens.",
    };
  }
  let grammar: LlamaGrammar | undefined;
  try {
    grammar = req.grammar ? grammarFor(c.model.llama, req.grammar) : undefined;
  } catch (err) {
    // The front checks schemas before they get here; this is node-llama-cpp refusing one anyway.
    return { code: "invalid_value", param: null, message: `The output grammar (response_format or tool_choice) could not be built: ${(err as Error).message}` };
  }
  const setup = buildEvaluateOptions(c.model, req.sampling, [...c.eogTokens], maxTokens, grammar);
  if (req.fork) setup.options.seed = choiceSeed(req.sampling.seed, req.fork.index);
  const decode = (tokens: readonly number[], context: readonly number[]) => c.model.detokenize(tokens as Token[], false, context as Token[]);
  return {
    id,
    tenant: req.tenant,
    priority: Number.isFinite(req.priority) ? req.priority : 0,
    batch: req.priorityClass === "batch",
    prompt,
    maxTokens,
    options: setup.options,
    generated: setup.generated,
    stopTokens,
    ignoreEos: req.sampling.ignoreEos,
    detok: new IncrementalDetokenizer(decode, prompt as number[]),
    stops: new StopMatcher(stopStrings),
    slot: null,
    evaluated: 0,
    cachedTokens: 0,
    gen: null,
    cancelled: false,
    stopMatched: false,
    text: "",
    newTokens: 0,
    submittedAtMs: performance.now(),
    queueMs: 0,
    prefillMs: null,
    fork: req.fork ?? null,
    topLogprobs: req.logprobs ?? null,
    logprobs: [],
    grammarSpec: req.grammar ?? null,
    sampleExcessMs: 0,
    slowSampling: null,
  };
}

/** A sampled token's effect on the job's output; the caller has counted it. */
export function acceptToken(job: Job, token: Token, eogSet: ReadonlySet<Token>): void {
  job.generated.push(token);
  job.newTokens++;
  if (endsTurn(job, token, eogSet)) {
    job.finish = "stop";
    return;
  }
  const { text, stopped } = job.stops.push(job.detok.push(token as number));
  job.text += text;
  if (stopped) {
    job.finish = "stop";
    job.stopMatched = true;
  } else if (job.generated.length >= job.maxTokens) job.finish = "length";
}

/** An end-of-generation or template stop token: it ends the turn and writes no text (nor a logprobs entry). */
export function endsTurn(job: Job, token: Token, eogSet: ReadonlySet<Token>): boolean {
  return (!job.ignoreEos && eogSet.has(token)) || job.stopTokens.has(token);
}

export function isFinished(job: Job): boolean {
  return job.finish !== undefined || job.cancelled;
}

/** Why the job ends now; null while it goes on. A cancelled job ends as "stop". */
export function finishReason(job: Job): FinishReason | null {
  if (job.finish) return job.finish;
  return job.cancelled ? "stop" : null;
}

/** The job's last delta: the held-back text released (unless a stop string cut it), and exact usage. */
export function finalDelta(job: Job, reason: FinishReason): Delta {
  let text = job.text;
  if (!job.stopMatched && !job.cancelled) {
    // Generation ended without a stop string: release what was held back.
    const tail = job.stops.push(job.detok.flush());
    text += tail.text;
    if (!tail.stopped) text += job.stops.flush();
  }
  job.text = "";
  const tokens = job.newTokens;
  job.newTokens = 0;
  return {
    id: job.id,
    text,
    tokens,
    finish: reason,
    usage: {
      promptTokens: job.prompt.length,
      completionTokens: job.generated.length,
      cachedTokens: job.cachedTokens,
      queueMs: job.queueMs,
      prefillMs: job.prefillMs ?? undefined,
    },
    ...takeLogprobs(job),
  };
}

/** The logprobs entries gathered since the job's last delta, as that delta's field (none: no field). */
export function takeLogprobs(job: Job): Pick<Delta, "logprobs"> {
  if (job.logprobs.length === 0) return {};
  const logprobs = job.logprobs;
  job.logprobs = [];
  return { logprobs };
}
