// The worker's embeddings service: one embedding context of the served model,
// created on the first embeddings request (a server that never embeds pays no
// memory for it), and one queue that serves every request's inputs.
//
// What node-llama-cpp allows, and why this is a queue rather than a batch:
// its LlamaEmbeddingContext owns a single sequence and evaluates one input at a
// time on it (erase, evaluate, read), and the addon's getEmbedding
// (llama/addon/AddonContext.cpp) reads sequence 0's pooled embedding, or the
// last output token's, never one per sequence. So inputs cannot share one
// llama_decode through node-llama-cpp. What the queue does instead: requests
// that arrive while it runs join the same loop, with no per-request setup (the
// context is created once and kept), and the loop takes one input of each
// pending request in turn, so a request with one input is not stuck behind one
// with 2048. A cancelled request's remaining inputs are dropped at the next
// input boundary.
//
// Sharing the CPU with generation: this is a separate llama.cpp context, so the
// step loop's context, slots and KV cache are untouched. Both contexts draw
// their threads from the one Llama instance, whose thread splitter caps the
// threads in use at --threads; each context demands all of them (ideal = min),
// so while both have work their decodes alternate, one at a time, rather than
// oversubscribing the cores. A generation step can therefore wait for at most
// one embedding decode (one input, or one --step-tokens chunk of a long one),
// and embeddings slow generation down only while they have work.
import type { LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import type { EmbedRequest, EngineErrorPayload, FromWorker } from "./protocol.js";

export interface EmbedderOptions {
  /** Longest input accepted, in tokens as evaluated (BOS included): the context clients are told of. */
  maxInputTokens: number;
  /** llama.cpp threads for the embedding context: the same explicit count as generation's. */
  threads: number;
  /**
   * Tokens per decode when the model reads its embedding off the last token
   * (causal, no pooling): generation's step budget, whose compute buffer the
   * operator already sized. A pooled or non-causal model gets the whole input in one.
   */
  batchTokens: number;
  /**
   * Awaited before each input is evaluated: resolves when generation has had
   * its turn (Engine.nextTurn), so embeddings take one input per generation
   * step while both have work, and run flat out only when generation is idle.
   */
  turn?: () => Promise<void>;
  /** Most tokens one request's inputs may add up to (default MAX_REQUEST_TOKENS). */
  maxRequestTokens?: number;
}

/** OpenAI's bound on one embeddings request: 300,000 tokens over all its inputs. */
export const MAX_REQUEST_TOKENS = 300_000;

interface EmbedJob {
  id: string;
  req: EmbedRequest;
  /** Each input's tokens, set when the job is first reached (checking needs the context). */
  tokens: Token[][] | null;
  /** Tokens each input is evaluated as (BOS/EOS added as the model wants). */
  counts: number[];
  vectors: Float32Array[];
  cancelled: boolean;
}

type Emit = (msg: FromWorker) => void;

/** Longest stretch of tokenizing before the check lets other work (engine steps, IPC) run. */
const CHECK_SLICE_MS = 5;

export class Embedder {
  private context: LlamaEmbeddingContext | null = null;
  /** Pending requests in arrival order; the loop serves them round-robin, one input each. */
  private readonly jobs: EmbedJob[] = [];
  private readonly byId = new Map<string, EmbedJob>();
  private loop: Promise<void> | null = null;
  private stopping = false;

  constructor(
    private readonly model: LlamaModel,
    private readonly opts: EmbedderOptions,
    private readonly emit: Emit,
  ) {}

  submit(id: string, req: EmbedRequest): void {
    const job: EmbedJob = { id, req, tokens: null, counts: [], vectors: [], cancelled: false };
    this.jobs.push(job);
    this.byId.set(id, job);
    this.wake();
  }

  /** Marks `id` cancelled; false when it is not an embeddings request of this worker. */
  cancel(id: string): boolean {
    const job = this.byId.get(id);
    if (!job) return false;
    job.cancelled = true;
    return true;
  }

  /** Stops after the input being evaluated; requests still pending are left to the front (it fails them). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  /** After stop(): frees the embedding context, if one was ever created. */
  async dispose(): Promise<void> {
    const context = this.context;
    this.context = null;
    await context?.dispose();
  }

  private wake(): void {
    if (this.loop || this.stopping) return;
    this.loop = this.run()
      .catch((err: unknown) => this.failAll(err))
      .finally(() => {
        this.loop = null;
        if (!this.stopping && this.jobs.length > 0) this.wake();
      });
  }

  private async run(): Promise<void> {
    while (!this.stopping && this.jobs.length > 0) {
      const context = await this.ensureContext();
      // One pass: one input of every pending request (snapshot: arrivals join the next pass).
      for (const job of [...this.jobs]) {
        if (this.stopping) return;
        if (job.cancelled) {
          this.drop(job);
          continue;
        }
        if (!job.tokens) {
          const error = await this.check(job, context);
          if (error || job.cancelled) {
            this.drop(job);
            if (error && !job.cancelled) this.emit({ t: "embed_failed", id: job.id, error });
            continue;
          }
        }
        const input = job.tokens![job.vectors.length]!;
        await this.opts.turn?.();
        if (this.stopping) return;
        if (job.cancelled) {
          this.drop(job);
          continue;
        }
        try {
          const embedding = await context.getEmbeddingFor(input);
          job.vectors.push(unitLength(embedding.vector));
        } catch (err) {
          this.drop(job);
          this.emit({ t: "embed_failed", id: job.id, error: evaluationError(err) });
          continue;
        }
        if (job.vectors.length === job.tokens!.length && !job.cancelled) {
          this.drop(job);
          this.emit({ t: "embedded", id: job.id, vectors: job.vectors, promptTokens: job.counts });
        }
      }
    }
  }

  private async ensureContext(): Promise<LlamaEmbeddingContext> {
    if (this.context) return this.context;
    const size = this.opts.maxInputTokens + 1;
    this.context = await this.model.createEmbeddingContext({
      // node-llama-cpp refuses an input of contextSize tokens or more, hence + 1.
      contextSize: size,
      // A pooled (mean, CLS...) or non-causal model's embedding is computed over
      // one decode, so the whole input must fit in one (node-llama-cpp sets
      // n_ubatch = batchSize). A causal model without pooling reads the last
      // token's, which chunked evaluation gets right; a batch of the whole
      // context would cost a compute buffer of context² attention scores.
      batchSize: readsWholeInput(this.model) ? size : Math.min(size, this.opts.batchTokens),
      // The generation context's setting. The type says number, but node-llama-cpp
      // passes it to createContext as is; a bare number would make min 1, and
      // the thread splitter would then give embeddings 1 thread while generation holds the rest.
      threads: { ideal: this.opts.threads, min: this.opts.threads } as unknown as number,
    });
    return this.context;
  }

  /**
   * Tokenizes and checks every input of `job`, before any is evaluated: a bad
   * request costs nothing. Yields to the event loop every CHECK_SLICE_MS, so
   * 2048 long inputs do not hold up the generation step loop in this process.
   */
  private async check(job: EmbedJob, context: LlamaEmbeddingContext): Promise<EngineErrorPayload | null> {
    const inputs = job.req.inputs;
    const name = (i: number) => (inputs.length > 1 ? `input[${i}]` : "input");
    const vocab = this.model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? Infinity;
    const tokens: Token[][] = [];
    const counts: number[] = [];
    const maxTotal = this.opts.maxRequestTokens ?? MAX_REQUEST_TOKENS;
    let total = 0;
    let sliceStart = performance.now();
    for (let i = 0; i < inputs.length; i++) {
      if (performance.now() - sliceStart > CHECK_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
      const input = inputs[i]!;
      let t: Token[];
      if (input.kind === "text") t = this.model.tokenize(input.text, false);
      else {
        const bad = input.tokens.find((id) => id >= vocab);
        if (bad !== undefined) {
          return { code: "invalid_prompt", param: "input", message: `Invalid '${name(i)}': token id ${bad} is not below the vocabulary size ${vocab}.` };
        }
        t = input.tokens as Token[];
      }
      // The count node-llama-cpp will evaluate: BOS (and EOS) added as the model wants, not twice.
      const n = context.calculateInputLength(t);
      if (n === 0) return { code: "invalid_prompt", param: "input", message: `Invalid '${name(i)}': it produced no tokens.` };
      if (n > this.opts.maxInputTokens) {
        return {
          code: "context_length_exceeded",
          param: "input",
          message: `This model's maximum context length is ${this.opts.maxInputTokens} tokens, however '${name(i)}' has ${n} tokens. Please reduce the length of the input.`,
        };
      }
      total += n;
      if (total > maxTotal) {
        return {
          code: "invalid_prompt",
          param: "input",
          message: `Invalid 'input': the request has more than ${maxTotal} tokens in all (${total} in its first ${i + 1} inputs); the most one embeddings request may have is ${maxTotal}. Split it into smaller requests.`,
        };
      }
      tokens.push(t);
      counts.push(n);
    }
    job.tokens = tokens;
    job.counts = counts;
    return null;
  }

  private drop(job: EmbedJob): void {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
    this.byId.delete(job.id);
  }

  /** The context could not be created (or something unexpected threw): every pending request fails, none is lost. */
  private failAll(err: unknown): void {
    const error = evaluationError(err);
    for (const job of this.jobs.splice(0)) {
      this.byId.delete(job.id);
      if (!job.cancelled) this.emit({ t: "embed_failed", id: job.id, error });
    }
  }
}

/** Whether the model's embedding pools over the input or attends both ways (GGUF pooling_type, attention.causal). */
function readsWholeInput(model: LlamaModel): boolean {
  const arch = model.fileInfo.architectureMetadata as { pooling_type?: number; attention?: { causal?: boolean } } | undefined;
  const pooling = arch?.pooling_type ?? 0; // 0 none, -1 unspecified: llama.cpp then pools nothing
  return pooling > 0 || arch?.attention?.causal === false;
}

function evaluationError(err: unknown): EngineErrorPayload {
  return { code: "engine_error", param: null, message: `Embedding failed: ${(err as Error)?.message ?? String(err)}` };
}

/**
 * The vector scaled to unit L2 length, as OpenAI's embeddings are (and
 * llama-server's, by default): cosine similarity is then a dot product.
 * node-llama-cpp returns llama.cpp's raw embedding. A zero vector stays zero.
 */
export function unitLength(vector: readonly number[]): Float32Array {
  let sum = 0;
  for (const x of vector) sum += x * x;
  const norm = Math.sqrt(sum);
  const out = new Float32Array(vector.length);
  for (let i = 0; i < vector.length; i++) out[i] = norm > 0 ? vector[i]! / norm : 0;
  return out;
}
