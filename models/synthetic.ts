// Synthetic llama-architecture GGUFs with deterministic random weights: the
// shapes of real models for benchmarks and tests, without downloading any.
// The tokenizer is copied from another GGUF (by default the 32,000-token
// Llama 2 vocabulary of ../shared/models/llama-2-tiny-random.gguf) and a
// ChatML template is embedded. Same preset + seed + vocab ⇒ identical bytes.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readGguf, TensorType, ValueType, writeGguf, type GgufValue, type TensorSpec } from "./gguf.js";
import { quantizeQ8_0 } from "./quant.js";

export interface Preset {
  embedding: number;
  layers: number;
  feedForward: number;
  heads: number;
  kvHeads: number;
  contextLength: number;
}

export const PRESETS = {
  tiny: { embedding: 64, layers: 2, feedForward: 256, heads: 4, kvHeads: 2, contextLength: 2048 },
  bench: { embedding: 1024, layers: 16, feedForward: 2816, heads: 16, kvHeads: 4, contextLength: 4096 },
} satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The repository root (the folder holding package.json), from source or from dist/. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find the llamux repository root");
    dir = up;
  }
  return dir;
}

export function defaultVocabSource(): string {
  return path.resolve(repoRoot(), "../shared/models/llama-2-tiny-random.gguf");
}

export interface MakeModelOptions {
  preset: PresetName;
  outPath: string;
  vocabFrom?: string;
  seed?: number;
  onProgress?: (fraction: number) => void;
}

export interface MadeModel {
  path: string;
  bytes: number;
  parameters: number;
}

/** xoshiro128** seeded through splitmix32: fast, and the same stream on every platform. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  const splitmix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix(), b = splitmix(), c = splitmix(), d = splitmix();
  return () => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = rotl(d, 11);
    return result / 4294967296;
  };
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

const ROWS_PER_CHUNK = 64;

/** A Q8_0 matrix of approximately normal weights N(0, std²), generated and quantized in chunks of rows. */
function randomQ8(name: string, dims: [number, number], seed: number, std: number): TensorSpec {
  return {
    name,
    dims,
    type: TensorType.Q8_0,
    *data() {
      const next = rng(seed);
      const [cols, rows] = dims;
      // Irwin-Hall: the sum of 4 uniforms has variance 1/3; scale to std.
      const scale = std * Math.sqrt(3);
      for (let r = 0; r < rows; r += ROWS_PER_CHUNK) {
        const n = Math.min(ROWS_PER_CHUNK, rows - r) * cols;
        const values = new Float32Array(n);
        for (let i = 0; i < n; i++) values[i] = (next() + next() + next() + next() - 2) * scale;
        yield quantizeQ8_0(values);
      }
    },
  };
}

function ones(name: string, n: number): TensorSpec {
  return {
    name,
    dims: [n],
    type: TensorType.F32,
    *data() {
      yield Buffer.from(new Float32Array(n).fill(1).buffer);
    },
  };
}

const u32 = (value: number): GgufValue => ({ type: ValueType.UINT32, value });
const f32v = (value: number): GgufValue => ({ type: ValueType.FLOAT32, value });
const str = (value: string): GgufValue => ({ type: ValueType.STRING, value });

export async function makeSyntheticModel(opts: MakeModelOptions): Promise<MadeModel> {
  const p: Preset = PRESETS[opts.preset];
  const seed = opts.seed ?? 0;
  const vocabFile = await readGguf(opts.vocabFrom ?? defaultVocabSource());
  const tokens = vocabFile.metadata.get("tokenizer.ggml.tokens");
  if (tokens?.type !== ValueType.ARRAY) throw new Error("the vocabulary source has no tokenizer.ggml.tokens");
  const vocab = tokens.value.length;
  const headDim = p.embedding / p.heads;

  const meta = new Map<string, GgufValue>([
    ["general.architecture", str("llama")],
    ["general.name", str(`llamux-synthetic-${opts.preset}`)],
    ["general.alignment", u32(32)],
    ["general.file_type", u32(7)], // mostly Q8_0
    ["llama.context_length", u32(p.contextLength)],
    ["llama.embedding_length", u32(p.embedding)],
    ["llama.block_count", u32(p.layers)],
    ["llama.feed_forward_length", u32(p.feedForward)],
    ["llama.rope.dimension_count", u32(headDim)],
    ["llama.attention.head_count", u32(p.heads)],
    ["llama.attention.head_count_kv", u32(p.kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", f32v(1e-5)],
    ["llama.rope.freq_base", f32v(10000)],
    ["llama.vocab_size", u32(vocab)],
    ["llamux.synthetic", { type: ValueType.BOOL, value: true }],
    ["llamux.seed", u32(seed >>> 0)],
  ]);
  for (const [key, value] of vocabFile.metadata) {
    if (key.startsWith("tokenizer.") && key !== "tokenizer.chat_template") meta.set(key, value);
  }
  meta.set("tokenizer.chat_template", str(CHATML_TEMPLATE));

  // Each tensor gets its own stream, so tensors are independent of write order.
  let stream = 0;
  const tensorSeed = () => (Math.imul(seed >>> 0, 0x9e3779b1) + ++stream * 0x85ebca6b) >>> 0;
  const std = 0.02;
  const e = p.embedding;
  const kv = p.kvHeads * headDim;
  const tensors: TensorSpec[] = [randomQ8("token_embd.weight", [e, vocab], tensorSeed(), std)];
  for (let l = 0; l < p.layers; l++) {
    const b = `blk.${l}`;
    tensors.push(
      ones(`${b}.attn_norm.weight`, e),
      randomQ8(`${b}.attn_q.weight`, [e, e], tensorSeed(), std),
      randomQ8(`${b}.attn_k.weight`, [e, kv], tensorSeed(), std),
      randomQ8(`${b}.attn_v.weight`, [e, kv], tensorSeed(), std),
      randomQ8(`${b}.attn_output.weight`, [e, e], tensorSeed(), std),
      ones(`${b}.ffn_norm.weight`, e),
      randomQ8(`${b}.ffn_gate.weight`, [e, p.feedForward], tensorSeed(), std),
      randomQ8(`${b}.ffn_up.weight`, [e, p.feedForward], tensorSeed(), std),
      randomQ8(`${b}.ffn_down.weight`, [p.feedForward, e], tensorSeed(), std),
    );
  }
  tensors.push(ones("output_norm.weight", e), randomQ8("output.weight", [e, vocab], tensorSeed(), std));

  const parameters = tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
  fs.mkdirSync(path.dirname(path.resolve(opts.outPath)), { recursive: true });
  const bytes = await writeGguf(opts.outPath, meta, tensors, (i, total) => opts.onProgress?.(i / total));
  return { path: opts.outPath, bytes, parameters };
}
