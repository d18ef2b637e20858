// The raw ceiling: the same model driven directly through node-llama-cpp, no
// HTTP, no IPC, no llamux engine. Each round gives C sequences a prompt of
// exactly `promptTokens` tokens and decodes `maxTokens` tokens in lockstep,
// prefill included, end to end, like llama-batched-bench. A server's
// throughput over this is the share of the hardware it actually delivers.
import { TokenBias, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { samplerTopK, setTokenBias } from "../engine/sampling.js";
import { loadModel, type GpuMode } from "../models/load.js";

export interface CeilingOptions {
  modelPath: string;
  /** The levels, in the order they run. */
  concurrency: number[];
  /** Requests per level; rounds = ceil(requests / concurrency). null: 4 × concurrency, as `llamux bench` does. */
  requests: number | null;
  /** Prompt length in tokens, BOS included. */
  promptTokens: number;
  maxTokens: number;
  /**
   * Context per sequence, in tokens: give the server's own (llamux
   * --ctx-per-slot, llama-server -c / -np). It is not free: node-llama-cpp
   * gives each sequence its own KV stream, and llama.cpp attends over at
   * least min(this, 256) cells of each at every step, used or not.
   * null: the least the shape needs (prompt + output + 64).
   */
  contextPerSequence: number | null;
  /**
   * Sequences in the context, give the server's slot count so both hold the
   * same KV layout; the levels use the first `concurrency` of them. null: the
   * largest level, which is also the least this may be.
   */
  sequences?: number | null;
  threads: number;
  gpu: GpuMode;
  onLevel?: (level: CeilingLevel) => void;
}

export interface CeilingLevel {
  concurrency: number;
  rounds: number;
  /** Tokens generated over all rounds (rounds × concurrency × maxTokens, counted, not assumed). */
  outputTokens: number;
  /** Wall time of the level's rounds. */
  seconds: number;
  outputTokensPerSecond: number;
}

// The sampling llamux applies to a bench request, which sends no sampling
// fields: OpenAI's defaults (temperature 1, no top-k, top-p 1, no min-p),
// built the way engine/sampling.ts builds them (no top-k sampler at all, so
// no sort of the vocabulary per token). Sampling the same way keeps the
// per-token sampler cost identical on both sides of the "vs ceiling" ratio.
const SAMPLING = { temperature: 1, topK: samplerTopK(null), topP: 1, minP: 0 } as const;

/** Bans every end-of-generation token, so every sequence yields exactly maxTokens. */
export function banEndOfGeneration(model: LlamaModel): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  const eog = new Set<Token>();
  for (const t of [model.tokens.eos, model.tokens.eot]) if (t !== null) eog.add(t);
  for (const t of model.iterateAllTokens()) if (model.isEogToken(t)) eog.add(t); // once per run: small vocabularies scan in ms
  for (const t of eog) setTokenBias(model, bias, t, -Infinity); // bias.set() would skip EOG tokens
  return bias;
}

/** Ordinary text tokens: a random prompt made of control or EOG tokens would not be a realistic prefill. */
function promptVocabulary(model: LlamaModel): Token[] {
  const vocab: Token[] = [];
  for (const t of model.iterateAllTokens()) if (!model.isSpecialToken(t) && !model.isEogToken(t)) vocab.push(t);
  if (vocab.length === 0) throw new Error("the model has no ordinary tokens to build prompts from");
  return vocab;
}

/**
 * `length` tokens (BOS first when the model has one), pseudo-random but
 * deterministic in `salt`. The first token after BOS is vocab[salt], so
 * prompts with salts below the vocabulary size share no prefix beyond BOS
 * (and no prefix cache could help a real server either).
 */
export function randomPrompt(vocab: readonly Token[], bos: Token | null, length: number, salt: number): Token[] {
  const tokens: Token[] = bos !== null ? [bos] : [];
  let x = (Math.imul(salt + 1, 2654435761) ^ 0x9e3779b9) >>> 0;
  tokens.push(vocab[salt % vocab.length]!);
  while (tokens.length < length) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    tokens.push(vocab[x % vocab.length]!);
  }
  return tokens.slice(0, Math.max(length, 1)); // a 1-token prompt with BOS is BOS alone
}

/** The context each sequence gets; throws when the shape does not fit in the one asked for. */
export function ceilingContextSize(opts: Pick<CeilingOptions, "promptTokens" | "maxTokens" | "contextPerSequence">): number {
  const needed = opts.promptTokens + opts.maxTokens;
  if (opts.contextPerSequence === null) return needed + 64;
  if (opts.contextPerSequence < needed) {
    throw new RangeError(
      `a context of ${opts.contextPerSequence} tokens per sequence cannot hold ${opts.promptTokens} prompt + ${opts.maxTokens} output tokens`,
    );
  }
  return opts.contextPerSequence;
}

export async function runCeiling(opts: CeilingOptions): Promise<CeilingLevel[]> {
  if (opts.concurrency.length === 0) throw new Error("runCeiling needs at least one concurrency level");
  const { llama, model } = await loadModel({ modelPath: opts.modelPath, threads: opts.threads, gpu: opts.gpu });
  try {
    const maxC = Math.max(...opts.concurrency);
    const context = await model.createContext({
      sequences: Math.max(maxC, opts.sequences ?? 0),
      contextSize: ceilingContextSize(opts), // per sequence in node-llama-cpp
      // One round's whole prefill in one batch when it fits, as a server with
      // enough batch room would do it.
      batchSize: Math.min(2048, Math.max(512, maxC * opts.promptTokens)),
      threads: { ideal: opts.threads, min: opts.threads },
    });
    try {
      const sequences = Array.from({ length: maxC }, () => context.getSequence());
      const tokenBias = banEndOfGeneration(model);
      const vocab = promptVocabulary(model);
      let salt = 0;
      const round = (c: number) =>
        lockstepRound(sequences.slice(0, c), opts.maxTokens, tokenBias, () => randomPrompt(vocab, model.tokens.bos, opts.promptTokens, salt++));

      await round(Math.min(maxC, opts.concurrency[0]!)); // warm-up, untimed: first-use allocations and caches
      const levels: CeilingLevel[] = [];
      for (const c of opts.concurrency) {
        const rounds = Math.ceil((opts.requests ?? 4 * c) / c);
        let outputTokens = 0;
        const started = performance.now();
        for (let r = 0; r < rounds; r++) outputTokens += await round(c);
        const seconds = (performance.now() - started) / 1000;
        const level = { concurrency: c, rounds, outputTokens, seconds, outputTokensPerSecond: outputTokens / seconds };
        opts.onLevel?.(level);
        levels.push(level);
      }
      return levels;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

/**
 * One round: every sequence prefills its prompt and generates `maxTokens`
 * tokens. Returns the tokens generated.
 *
 * Lockstep matters: every generator's `.next()` is called in the same tick, so
 * node-llama-cpp's batching gathers all pending evaluations into a single
 * llama_decode per step (the first step carries all prompts). Awaiting one
 * sequence before starting the next would measure C separate decodes instead.
 */
async function lockstepRound(sequences: LlamaContextSequence[], maxTokens: number, tokenBias: TokenBias, nextPrompt: () => Token[]): Promise<number> {
  await Promise.all(sequences.map((s) => s.clearHistory()));
  const gens = sequences.map((seq, i) => seq.evaluate(nextPrompt(), { ...SAMPLING, seed: i, tokenBias }));
  const live = new Set(gens.keys());
  let tokens = 0;
  try {
    for (let step = 0; step < maxTokens && live.size > 0; step++) {
      const ids = [...live];
      const results = await Promise.all(ids.map((i) => gens[i]!.next()));
      results.forEach((r, k) => {
        if (r.done) live.delete(ids[k]!);
        else tokens++;
      });
    }
  } finally {
    await Promise.all(gens.map((g) => g.return(undefined)));
  }
  return tokens;
}
