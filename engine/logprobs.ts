// Exact log-probabilities of the model's raw distribution, computed next to
// sampling without changing what is sampled.
//
// node-llama-cpp's own `probabilities` metadata is read from the candidate
// array after the sampler chain (temperature, top-k/top-p truncation, bias,
// penalties, grammar: AddonContext.cpp SampleToken), which is not what OpenAI
// reports. So the context's native sampleToken is wrapped. A job that wants
// logprobs is evaluated with evaluateWithMetadata(..., {probabilities: true});
// only those calls arrive here with `probabilities === true` (and no logits
// argument: controlledEvaluate's layout is passed through untouched). For them:
//   1. the original sampleToken with the job's own sampler and no extras:
//      the token the job would have sampled anyway (grammar, bias, seed);
//   2. on the same batchLogitIndex (the logits stay valid until every sampling
//      promise of the batch has resolved: LlamaContext.js decodeTokenBatchItems
//      awaits them before the next decode), a greedy sampler with nothing else
//      in its chain, so its candidates are the whole vocabulary's raw logits:
//      it returns the logits of the sampled token and of the argmax (the
//      greedy pick, `includeSelected`) and Σ exp(logit − maxLogit) over all
//      of them (`totalLogitWeight`), so
//          logprob(t) = logit(t) − maxLogit − ln(totalLogitWeight);
//   3. in parallel with 1, a top-k sampler at temperature 1 (logits divided by
//      1.0, exactly unchanged) whose partial sort leaves the MAX_TOP_LOGPROBS
//      highest raw logits first: the top alternatives, without sorting the
//      whole vocabulary (std::sort of 32k candidates costs ~2.5 ms a token).
// The wrapper then returns [token, packed] to node-llama-cpp, which revives
// `packed` as the yielded `probabilities` Map.
//
// !!! That Map holds raw LOG-probabilities, not probabilities: key SAMPLED_KEY
// !!! (-1) is the sampled token's, the other keys are the top alternatives,
// !!! most likely first. Read it only through readLogprobs().
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { MAX_TOP_LOGPROBS, type TokenLogprob, type TopLogprob } from "./protocol.js";
import { TokenPieces } from "./tokenBytes.js";

/** Key of the sampled token's own log-probability in the yielded Map. */
export const SAMPLED_KEY = -1;

/** What node-llama-cpp yields for a job evaluated with {probabilities: true}. */
export interface TokenWithLogprobs {
  token: Token;
  probabilities?: Map<number, number>;
}

type SampleToken = (batchLogitIndex: number, sampler: unknown, ...rest: unknown[]) => Promise<unknown>;

interface AddonSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}

interface SamplerPair {
  /** Greedy over the raw logits: sampled and argmax logits, total weight. */
  full: AddonSampler;
  /** Top-k over the raw logits: the most likely tokens, sorted. */
  top: AddonSampler;
}

const INSTALLED = Symbol("llamux.rawLogprobs");

/**
 * The per-context wrapper and its pool of raw samplers. A sampler holds a
 * candidate buffer its native calls write, so one is never used by two calls
 * at once: each call takes a pair from the pool (creating one when all are
 * busy, at most one per slot sampling in a step) and puts it back.
 */
export class RawLogprobs {
  private readonly pool: SamplerPair[] = [];
  private readonly all: SamplerPair[] = [];
  private disposed = false;
  private readonly ctx: { sampleToken: SampleToken; [INSTALLED]?: true };
  private readonly original: SampleToken;
  private readonly newSampler: () => AddonSampler;
  /** Each token's text and bytes, for the entries. */
  private readonly pieces: TokenPieces;

  /** Throws at engine start if node-llama-cpp's internals are not the shape this relies on. */
  constructor(model: LlamaModel, context: LlamaContext) {
    const ctx = (context as unknown as { _ctx?: { sampleToken?: unknown; [INSTALLED]?: true } })._ctx;
    if (!ctx || typeof ctx.sampleToken !== "function") throw internalsChanged("LlamaContext._ctx.sampleToken");
    if (ctx[INSTALLED]) throw new Error("raw log-probabilities are already installed on this context");
    const internal = model as unknown as { _model?: unknown; _llama?: { _bindings?: { AddonSampler?: unknown } } };
    const Sampler = internal._llama?._bindings?.AddonSampler;
    if (typeof Sampler !== "function" || !internal._model) throw internalsChanged("LlamaModel._llama._bindings.AddonSampler");
    this.newSampler = () => {
      const s = new (Sampler as new (m: unknown) => AddonSampler)(internal._model);
      if (typeof s.applyConfig !== "function" || typeof s.dispose !== "function") throw internalsChanged("AddonSampler");
      return s;
    };
    this.ctx = ctx as { sampleToken: SampleToken; [INSTALLED]?: true };
    this.original = (ctx.sampleToken as SampleToken).bind(ctx);
    // A first pair now: a sampler that cannot be built fails the engine's start, not a request.
    this.pool.push(this.createPair());
    const wrapped: SampleToken = (batchLogitIndex, sampler, ...rest) => {
      // _evaluate's layout with {probabilities: true}: (index, sampler, true, confidence).
      if (rest[0] !== true || rest[2] !== undefined) return this.original(batchLogitIndex, sampler, ...rest);
      return this.sampleWithLogprobs(batchLogitIndex, sampler);
    };
    // The native method is a read-only prototype property: shadow it with an own one.
    Object.defineProperty(this.ctx, "sampleToken", { value: wrapped, writable: true, configurable: true, enumerable: false });
    if (this.ctx.sampleToken !== wrapped) throw internalsChanged("LlamaContext._ctx is not extensible");
    this.ctx[INSTALLED] = true;
    const ggml = model.fileInfo.metadata.tokenizer?.ggml as { model?: string; pre?: string; tokens?: string[]; token_type?: number[] } | undefined;
    this.pieces = new TokenPieces(ggml?.tokens ? { model: ggml.model, pre: ggml.pre, tokens: ggml.tokens, tokenTypes: ggml.token_type } : null, (t) =>
      model.detokenize([t as Token], false),
    );
  }

  /** The protocol entry of a sampled token from what evaluateWithMetadata yielded for it (see readLogprobs). */
  entry(token: number, packed: Map<number, number> | undefined, top: number): TokenLogprob {
    return readLogprobs(token, packed, top, this.pieces);
  }

  /**
   * Restores the native sampleToken and frees the raw samplers. Only once
   * nothing samples (Engine.stop awaits its step loop first): a native call
   * in flight would use a freed sampler.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    delete (this.ctx as { sampleToken?: SampleToken }).sampleToken;
    delete this.ctx[INSTALLED];
    for (const pair of this.all) {
      pair.full.dispose();
      pair.top.dispose();
    }
    this.pool.length = 0;
  }

  private createPair(): SamplerPair {
    const full = this.newSampler();
    const top = this.newSampler();
    // Only `temperature`: no bias, penalties, grammar or truncation in the chain.
    full.applyConfig({ temperature: 0 });
    // topK then temperature 1 (an exact no-op) then a seeded draw nobody reads.
    top.applyConfig({ temperature: 1, topK: MAX_TOP_LOGPROBS, seed: 0 });
    const pair = { full, top };
    this.all.push(pair);
    return pair;
  }

  private async sampleWithLogprobs(batchLogitIndex: number, jobSampler: unknown): Promise<unknown> {
    if (this.disposed) throw new Error("raw log-probabilities were disposed with the engine");
    const pair = this.pool.pop() ?? this.createPair();
    try {
      const topCall = this.original(batchLogitIndex, pair.top, false, false, [[], false, false, false, MAX_TOP_LOGPROBS], false);
      const token = await this.original(batchLogitIndex, jobSampler);
      if (typeof token !== "number") throw internalsChanged("sampleToken's result");
      if (token < 0) {
        await topCall.catch(() => undefined);
        return token; // nothing sampled: node-llama-cpp raises its own error for -1
      }
      const full = await this.original(batchLogitIndex, pair.full, false, false, [[token], false, false, true, 0], true);
      const [argmax, , , fullLogits, totalWeight] = asResult(full);
      const logits = pairs(fullLogits);
      const maxLogit = logits.get(argmax as number);
      const sampledLogit = logits.get(token);
      if (maxLogit === undefined || sampledLogit === undefined || typeof totalWeight !== "number" || !(totalWeight >= 1)) {
        throw internalsChanged("sampleToken's logits and totalLogitWeight");
      }
      const logNorm = maxLogit + Math.log(totalWeight);
      const packed: number[] = [SAMPLED_KEY, sampledLogit - logNorm];
      for (const [t, logit] of pairs(asResult(await topCall)[3])) packed.push(t, logit - logNorm);
      return [token, packed];
    } finally {
      if (!this.disposed) this.pool.push(pair);
    }
  }
}

function internalsChanged(what: string): Error {
  return new Error(`node-llama-cpp's internals changed (${what}): cannot compute exact log-probabilities`);
}

function asResult(value: unknown): unknown[] {
  if (!Array.isArray(value)) throw internalsChanged("sampleToken's result");
  return value;
}

/** A native [token, value, token, value, ...] array as an insertion-ordered Map. */
function pairs(value: unknown): Map<number, number> {
  if (!Array.isArray(value) || value.length % 2 !== 0) throw internalsChanged("sampleToken's logits");
  const map = new Map<number, number>();
  for (let i = 0; i < value.length; i += 2) map.set(value[i] as number, value[i + 1] as number);
  return map;
}

/** A log-probability JSON can carry: OpenAI's -9999 stands for "too unlikely to say". */
const finite = (logprob: number): number => (Number.isFinite(logprob) ? logprob : -9999);

/**
 * The protocol entry for one sampled token, from the Map the wrapper packed:
 * its log-probability, and the `top` most likely tokens at its position.
 */
export function readLogprobs(token: number, packed: Map<number, number> | undefined, top: number, pieces: TokenPieces): TokenLogprob {
  const own = packed?.get(SAMPLED_KEY);
  if (own === undefined) throw internalsChanged("evaluateWithMetadata's probabilities");
  const alternatives: TopLogprob[] = [];
  for (const [t, logprob] of packed!) {
    if (alternatives.length >= top) break;
    if (t !== SAMPLED_KEY) alternatives.push({ ...pieces.piece(t), logprob: finite(logprob) });
  }
  return { ...pieces.piece(token), logprob: finite(own), top: alternatives };
}
