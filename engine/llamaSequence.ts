// The engine's sequence interface (sequence.ts) over node-llama-cpp: one
// LlamaContextSequence per slot, request preparation with the model's
// tokenizer and template, and the sampling wrappers (logprobs.ts,
// samplingGuard.ts) installed on the context.
import type { LlamaContext, LlamaContextSequence, LlamaModel, SequenceEvaluateOptions, Token } from "node-llama-cpp";
import type { ChatTemplate } from "../models/chatTemplate.js";
import { batchPlace } from "./batchOrder.js";
import { assertCanCopyState, copyPromptState } from "./fork.js";
import { prepareJob } from "./job.js";
import { RawLogprobs } from "./logprobs.js";
import { longestTokenBytes } from "./promptBounds.js";
import type { EngineRequest } from "./protocol.js";
import { findEogTokens } from "./sampling.js";
import { SamplingGuard } from "./samplingGuard.js";
import type { EngineSequence, Prepared, SequenceRuntime, TokenStream } from "./sequence.js";

/** One slot's sequence; its index places its tokens in every decode (batchOrder.ts). */
export class LlamaSequence implements EngineSequence {
  constructor(
    readonly seq: LlamaContextSequence,
    private readonly index: number,
  ) {}

  get contextTokens(): Token[] {
    return this.seq.contextTokens;
  }

  get nextTokenIndex(): number {
    return this.seq.nextTokenIndex;
  }

  clearHistory(): Promise<void> {
    return this.seq.clearHistory();
  }

  async keep(tokens: number): Promise<void> {
    if (this.seq.nextTokenIndex > tokens) await this.seq.eraseContextTokenRanges([{ start: tokens, end: this.seq.nextTokenIndex }]);
  }

  prefill(tokens: Token[]): Promise<void> {
    return this.seq.evaluateWithoutGeneratingNewTokens(tokens, batchPlace(this.index));
  }

  generate(tokens: Token[], options: SequenceEvaluateOptions, probabilities: boolean): TokenStream {
    const placed = { ...options, ...batchPlace(this.index) };
    // Only jobs with logprobs pay for metadata: the others keep the bare-token path.
    return probabilities ? this.seq.evaluateWithMetadata(tokens, { probabilities: true }, placed) : this.seq.evaluate(tokens, placed);
  }

  copyPrefix(source: EngineSequence, tokens: number): Promise<boolean> {
    return copyPromptState(this.seq, (source as LlamaSequence).seq, tokens);
  }

  saveStateToFile(file: string): Promise<unknown> {
    return this.seq.saveStateToFile(file);
  }

  loadStateFromFile(file: string, options: { acceptRisk: true }): Promise<unknown> {
    return this.seq.loadStateFromFile(file, options);
  }
}

/** The engine's runtime over a model and a fresh context with at least `slots` sequences. */
export function llamaRuntime(
  model: LlamaModel,
  context: LlamaContext,
  template: ChatTemplate,
  opts: { slots: number; contextPerSlot: number },
): SequenceRuntime {
  // A fresh context hands out sequence ids 0, 1, 2...: a slot's index is its sequence id (batchOrder.ts).
  const sequences = Array.from({ length: opts.slots }, (_, index) => new LlamaSequence(context.getSequence(), index));
  if (sequences[0]) assertCanCopyState(sequences[0].seq);
  const eogTokens = findEogTokens(model);
  // The guard wraps what RawLogprobs installed: installed in this order, removed in the reverse.
  const rawLogprobs = new RawLogprobs(model, context);
  const guard = new SamplingGuard(context);
  const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens ?? [];
  const maxTokenBytes = longestTokenBytes(vocab);
  const jobContext = { model, template, contextPerSlot: opts.contextPerSlot, eogTokens, vocabSize: vocab.length, maxTokenBytes };
  return {
    sequences,
    eogTokens: new Set(eogTokens),
    maxTokenBytes,
    prepare(id: string, req: EngineRequest) {
      const job = prepareJob(jobContext, id, req);
      if ("code" in job) return job;
      // Echo returns the prompt as the caller wrote it; only token prompts need decoding.
      const promptText = !req.echo ? null : req.prompt.kind === "text" ? req.prompt.text : model.detokenize(job.prompt, false);
      return { job, promptText } satisfies Prepared;
    },
    logprobEntry: (token, probabilities, top) => rawLogprobs.entry(token, probabilities, top),
    takeSamplingErrors: () => guard.take(),
    lastSampleOwnMs: () => guard.lastSampleOwnMs,
    dispose() {
      guard.dispose();
      rawLogprobs.dispose();
    },
  };
}
