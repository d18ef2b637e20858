// Synthetic llama-architecture GGUFs with deterministic random weights: the
// shapes (and so the speed) of real models for benchmarks and tests, without
// downloading any. The tokenizer is copied from another GGUF (by default the
// 32,000-token Llama 2 vocabulary of ../shared/models/llama-2-tiny-random.gguf)
// and a ChatML template is embedded. Same preset + seed + vocab ⇒ same bytes.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { alignmentOf, readGguf, TensorType, ValueType, writeGguf, type GgufValue, type TensorSpec } from "./gguf.js";
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
  // ~4.2M parameters, almost all of them the two 32000×64 vocabulary matrices.
  tiny: { embedding: 64, layers: 2, feedForward: 256, heads: 4, kvHeads: 2, contextLength: 2048 },
  // ~246M parameters: TinyLlama-like proportions at a size two CPU cores can serve.
  bench: { embedding: 1024, layers: 16, feedForward: 2816, heads: 16, kvHeads: 4, contextLength: 4096 },
} satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The repository root (the folder holding package.json), whether running from models/ or dist/models/. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find the llamux repository root (no package.json above this module)");
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
  /** GGUF to copy tokenizer.* from; defaults to defaultVocabSource(). */
  vocabFrom?: string;
  /** Weight seed, an unsigned 32-bit integer; default 0. */
  seed?: number;
  /** Fraction of the file's bytes written, in [0, 1]. */
  onProgress?: (fraction: number) => void;
}

export interface MadeModel {
  path: string;
  bytes: number;
  parameters: number;
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** splitmix32: turns one 32-bit seed into well-mixed state words for xoshiro. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** xoshiro128**: fast 32-bit integer PRNG, the same stream on every platform (no floating point). */
export function xoshiro128ss(seed: number): () => number {
  const mix = splitmix32(seed);
  let a = mix(),
    b = mix(),
    c = mix(),
    d = mix();
  return () => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
}

/** FNV-1a of a tensor name: gives every tensor its own stream, independent of write order. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// Irwin–Hall: the sum of four uniform 16-bit halves (two PRNG draws) is close
// to normal, with mean 4·32767.5 and variance 4·(65536²−1)/12. Integer-only
// until the final scale, so the bytes cannot vary with the platform's libm.
const IH_MEAN = 2 * 65535;
const IH_STD = Math.sqrt((4 * (65536 * 65536 - 1)) / 12);

/** Fills `out` with approximately N(0, std²) values. */
function fillNormal(out: Float32Array, next: () => number, std: number): void {
  const scale = std / IH_STD;
  for (let i = 0; i < out.length; i++) {
    const x = next();
    const y = next();
    out[i] = ((x & 0xffff) + (x >>> 16) + (y & 0xffff) + (y >>> 16) - IH_MEAN) * scale;
  }
}

const VALUES_PER_CHUNK = 64 * 1024;

/**
 * A Q8_0 matrix [ne0 = inputs, ne1 = outputs] with N(0, 1/inputs) weights, so
 * each matmul roughly preserves activation scale (at the bench size this is
 * the customary ~0.02). Generated, quantized and handed to the writer a few
 * rows at a time: memory stays at one chunk whatever the model size.
 */
function randomMatrix(name: string, dims: [number, number], seed: number): TensorSpec {
  const [inputs, outputs] = dims;
  return {
    name,
    dims,
    type: TensorType.Q8_0,
    *data() {
      const next = xoshiro128ss((nameHash(name) ^ Math.imul(seed, 0x9e3779b1)) >>> 0);
      const std = 1 / Math.sqrt(inputs);
      const rowsPerChunk = Math.max(1, Math.floor(VALUES_PER_CHUNK / inputs));
      for (let row = 0; row < outputs; row += rowsPerChunk) {
        const values = new Float32Array(Math.min(rowsPerChunk, outputs - row) * inputs);
        fillNormal(values, next, std);
        yield quantizeQ8_0(values);
      }
    },
  };
}

/** An RMS-norm weight: all ones, so the norm only normalizes. */
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
const f32 = (value: number): GgufValue => ({ type: ValueType.FLOAT32, value });
const str = (value: string): GgufValue => ({ type: ValueType.STRING, value });

function checkPreset(p: Preset): void {
  if (p.embedding % p.heads !== 0) throw new Error("embedding must be a multiple of heads");
  if (p.heads % p.kvHeads !== 0) throw new Error("heads must be a multiple of kvHeads");
  // Q8_0 packs each row (ne0) in 32-value blocks; ne0 is embedding or feedForward.
  if (p.embedding % 32 !== 0 || p.feedForward % 32 !== 0) throw new Error("embedding and feedForward must be multiples of 32");
}

/** Tensor list in llama.cpp's names and GGUF dim order (ne0 first: [inputs, outputs]). */
function llamaTensors(p: Preset, vocab: number, seed: number): TensorSpec[] {
  const e = p.embedding;
  const headDim = e / p.heads;
  const q = p.heads * headDim;
  const kv = p.kvHeads * headDim;
  const ff = p.feedForward;
  const tensors: TensorSpec[] = [randomMatrix("token_embd.weight", [e, vocab], seed)];
  for (let l = 0; l < p.layers; l++) {
    const b = `blk.${l}`;
    tensors.push(
      ones(`${b}.attn_norm.weight`, e),
      randomMatrix(`${b}.attn_q.weight`, [e, q], seed),
      randomMatrix(`${b}.attn_k.weight`, [e, kv], seed),
      randomMatrix(`${b}.attn_v.weight`, [e, kv], seed),
      randomMatrix(`${b}.attn_output.weight`, [q, e], seed),
      ones(`${b}.ffn_norm.weight`, e),
      randomMatrix(`${b}.ffn_gate.weight`, [e, ff], seed),
      randomMatrix(`${b}.ffn_up.weight`, [e, ff], seed),
      randomMatrix(`${b}.ffn_down.weight`, [ff, e], seed),
    );
  }
  tensors.push(ones("output_norm.weight", e), randomMatrix("output.weight", [e, vocab], seed));
  return tensors;
}

export async function makeSyntheticModel(opts: MakeModelOptions): Promise<MadeModel> {
  const p: Preset | undefined = PRESETS[opts.preset];
  if (!p) throw new Error(`unknown preset '${opts.preset}' (${Object.keys(PRESETS).join(" | ")})`);
  checkPreset(p);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be an integer in [0, 2^32), got ${seed}`);

  const vocabFrom = opts.vocabFrom ?? defaultVocabSource();
  const source = await readGguf(vocabFrom);
  const tokens = source.metadata.get("tokenizer.ggml.tokens");
  if (tokens?.type !== ValueType.ARRAY) throw new Error(`${vocabFrom} has no tokenizer.ggml.tokens to copy`);
  const vocab = tokens.value.length;

  const meta = new Map<string, GgufValue>([
    ["general.architecture", str("llama")],
    ["general.name", str(`llamux-synthetic-${opts.preset}`)],
    ["general.alignment", u32(32)],
    ["general.file_type", u32(7)], // LLAMA_FTYPE_MOSTLY_Q8_0
    ["llama.context_length", u32(p.contextLength)],
    ["llama.embedding_length", u32(p.embedding)],
    ["llama.block_count", u32(p.layers)],
    ["llama.feed_forward_length", u32(p.feedForward)],
    ["llama.rope.dimension_count", u32(p.embedding / p.heads)],
    ["llama.attention.head_count", u32(p.heads)],
    ["llama.attention.head_count_kv", u32(p.kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", f32(1e-5)],
    ["llama.rope.freq_base", f32(10000)],
    ["llama.vocab_size", u32(vocab)],
    ["llamux.synthetic", { type: ValueType.BOOL, value: true }],
    ["llamux.seed", u32(seed)],
  ]);
  for (const [key, value] of source.metadata) {
    if (key.startsWith("tokenizer.")) meta.set(key, value);
  }
  meta.set("tokenizer.chat_template", str(CHATML_TEMPLATE));
  if (alignmentOf(meta) !== 32) throw new Error("internal: alignment must be 32");

  const tensors = llamaTensors(p, vocab, seed);
  const parameters = tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
  await fs.promises.mkdir(path.dirname(path.resolve(opts.outPath)), { recursive: true });
  const bytes = await writeGguf(opts.outPath, meta, tensors, (written, total) => opts.onProgress?.(written / total));
  return { path: opts.outPath, bytes, parameters };
}
