// GGUF reader/writer: metadata of every type round-trips, real files parse (and
// re-encode to the same bytes), and the f16 / Q8_0 encoders match the formats.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import {
  dequantizeQ8_0,
  encodeHeader,
  f16ToF32,
  f32ToF16,
  quantizeQ8_0,
  readGguf,
  TensorType,
  toF16Buffer,
  ValueType,
  writeGguf,
  type GgufValue,
  type TensorSpec,
} from "../../../models/gguf.js";
import { repoRoot } from "../../../models/synthetic.js";

const SHARED_MODELS = path.resolve(repoRoot(), "../shared/models");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-gguf-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("metadata of every type and tensors of every supported type survive a write/read round trip", async () => {
  const meta = new Map<string, GgufValue>([
    ["general.alignment", { type: ValueType.UINT32, value: 32 }],
    ["a.u8", { type: ValueType.UINT8, value: 200 }],
    ["a.i8", { type: ValueType.INT8, value: -5 }],
    ["a.u16", { type: ValueType.UINT16, value: 60000 }],
    ["a.i16", { type: ValueType.INT16, value: -30000 }],
    ["a.i32", { type: ValueType.INT32, value: -123456 }],
    ["a.f32", { type: ValueType.FLOAT32, value: 0.5 }],
    ["a.bool", { type: ValueType.BOOL, value: true }],
    ["a.str", { type: ValueType.STRING, value: "héllo 🦙" }],
    ["a.u64", { type: ValueType.UINT64, value: 2n ** 40n }],
    ["a.i64", { type: ValueType.INT64, value: -(2n ** 40n) }],
    ["a.f64", { type: ValueType.FLOAT64, value: Math.PI }],
    ["a.strs", { type: ValueType.ARRAY, itemType: ValueType.STRING, value: ["x", "", "zz"] }],
    ["a.ints", { type: ValueType.ARRAY, itemType: ValueType.INT32, value: [1, -2, 3] }],
    ["a.floats", { type: ValueType.ARRAY, itemType: ValueType.FLOAT32, value: [0.25, -1.5] }],
    ["a.empty", { type: ValueType.ARRAY, itemType: ValueType.UINT8, value: [] }],
  ]);
  const q = new Float32Array(64).map((_, i) => i / 10);
  const file = path.join(tmp, "roundtrip.gguf");
  const bytes = await writeGguf(file, meta, [
    { name: "f32", dims: [3], type: TensorType.F32, data: () => [Buffer.from(new Float32Array([1, 2, 3]).buffer)] },
    { name: "f16", dims: [2, 2], type: TensorType.F16, data: () => [toF16Buffer(new Float32Array([1, -2, 0.5, 65504]))] },
    { name: "q8", dims: [32, 2], type: TensorType.Q8_0, data: () => [quantizeQ8_0(q)] },
  ]);
  assert.equal(bytes, fs.statSync(file).size);
  assert.equal(fs.existsSync(`${file}.tmp`), false);

  const read = await readGguf(file);
  assert.equal(read.version, 3);
  assert.deepEqual([...read.metadata.keys()], [...meta.keys()]);
  for (const [k, v] of meta) assert.deepEqual(read.metadata.get(k), v, k);
  assert.deepEqual(
    read.tensors.map((t) => [t.name, t.dims, t.type]),
    [
      ["f32", [3], TensorType.F32],
      ["f16", [2, 2], TensorType.F16],
      ["q8", [32, 2], TensorType.Q8_0],
    ],
  );
  // Every tensor starts aligned, at the place its info says.
  assert.equal(read.dataOffset % 32, 0);
  const raw = fs.readFileSync(file);
  const at = (i: number) => read.dataOffset + Number(read.tensors[i]!.offset);
  for (const i of [0, 1, 2]) assert.equal(at(i) % 32, 0);
  assert.deepEqual([...raw.subarray(at(0), at(0) + 12)], [...Buffer.from(new Float32Array([1, 2, 3]).buffer)]);
  assert.deepEqual(
    [0, 1, 2, 3].map((j) => f16ToF32(raw.readUInt16LE(at(1) + 2 * j))),
    [1, -2, 0.5, 65504],
  );
  const back = dequantizeQ8_0(raw.subarray(at(2), at(2) + 68));
  // Within half a quantization step of its block (step = max|x| / 127).
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(back[i]! - q[i]!) <= (i < 32 ? 3.1 : 6.3) / 127 / 2 + 1e-3, `q8[${i}]`);
  // Like ggml's own writer, every tensor (the last too) is padded to the alignment.
  assert.equal(raw.length, Math.ceil((at(2) + 68) / 32) * 32);
});

test("many small chunks stream out in order (backpressure path)", async () => {
  const file = path.join(tmp, "chunks.gguf");
  const chunks = 200;
  const perChunk = 16 * 1024; // floats: 200 × 64 KB ≈ 13 MB, several times the stream's buffer
  const expected = crypto.createHash("sha256");
  const spec: TensorSpec = {
    name: "big",
    dims: [perChunk, chunks],
    type: TensorType.F32,
    async *data() {
      for (let c = 0; c < chunks; c++) {
        const b = Buffer.from(new Float32Array(perChunk).fill(c).buffer);
        expected.update(b);
        yield b;
      }
    },
  };
  const progress: number[] = [];
  await writeGguf(file, new Map(), [spec], (written, total) => progress.push(written / total));
  const g = await readGguf(file);
  const raw = fs.readFileSync(file);
  assert.equal(crypto.createHash("sha256").update(raw.subarray(g.dataOffset)).digest("hex"), expected.digest("hex"));
  assert.equal(progress.length, chunks);
  assert.equal(progress.at(-1), 1);
});

test("a tensor producing the wrong number of bytes is an error, and no file (final or .tmp) is left", async () => {
  const file = path.join(tmp, "bad.gguf");
  await assert.rejects(
    writeGguf(file, new Map(), [{ name: "t", dims: [4], type: TensorType.F32, data: () => [Buffer.alloc(8)] }]),
    /wrote 8 bytes, expected 16/,
  );
  assert.equal(fs.existsSync(file), false);
  assert.equal(fs.existsSync(`${file}.tmp`), false);
});

test("reads a real model: stories260K is llama with a 512-token vocabulary", async () => {
  const g = await readGguf(path.join(SHARED_MODELS, "stories260K.gguf"));
  assert.equal(g.metadata.get("general.architecture")?.value, "llama");
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  assert.equal(tokens?.type, ValueType.ARRAY);
  assert.equal(tokens.itemType, ValueType.STRING);
  assert.equal(tokens.value.length, 512);
  // GGUF lists ne0 (the input dimension) first: [n_embd, n_vocab], [n_embd, n_kv·head_dim], [n_ff, n_embd].
  const dims = (name: string) => g.tensors.find((t) => t.name === name)?.dims;
  assert.deepEqual(dims("token_embd.weight"), [64, 512]);
  assert.deepEqual(dims("blk.0.attn_k.weight"), [64, 32]);
  assert.deepEqual(dims("blk.0.ffn_down.weight"), [172, 64]);
});

test("re-encoding a real file's header reproduces its bytes exactly (types preserved)", async () => {
  // llama-2-tiny-random's header (~700 KB: three 32,000-entry arrays) is also
  // larger than readGguf's first read, so this covers reading more.
  const file = path.join(SHARED_MODELS, "llama-2-tiny-random.gguf");
  const g = await readGguf(file);
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  assert.equal(tokens?.type === ValueType.ARRAY && tokens.value.length, 32000);
  assert.equal(g.metadata.get("tokenizer.ggml.scores")?.type, ValueType.ARRAY);
  const { header, dataBytes } = encodeHeader(g.metadata, g.tensors);
  const raw = fs.readFileSync(file);
  assert.equal(header.length, g.dataOffset);
  assert.ok(header.equals(raw.subarray(0, g.dataOffset)), "header bytes differ");
  assert.equal(g.dataOffset + dataBytes, raw.length);
});

test("rejects a file that is not GGUF, and one cut off inside its header", async () => {
  const notGguf = path.join(tmp, "not.gguf");
  fs.writeFileSync(notGguf, "hello world, not a model");
  await assert.rejects(readGguf(notGguf), /not a GGUF file/);
  const cut = path.join(tmp, "cut.gguf");
  fs.writeFileSync(cut, fs.readFileSync(path.join(SHARED_MODELS, "stories260K.gguf")).subarray(0, 5000));
  await assert.rejects(readGguf(cut), /ends inside its header/);
});

test("f32 → f16 encodes known values exactly, rounding to nearest even", () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [0.1, 0x2e66],
    [-3.140625, 0xc248],
    [65504, 0x7bff], // largest finite half
    [65520, 0x7c00], // rounds up past it → +Inf
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [3 * 2 ** -25, 0x0002], // subnormal tie 1.5 → even 2
    [2 ** -26, 0x0000], // underflow
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10 → even (1)
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 (odd) and 1+2^-9 → even (up)
  ];
  for (const [x, bits] of cases) assert.equal(f32ToF16(x), bits, `f32ToF16(${x})`);
  const nan = f32ToF16(NaN);
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, "NaN stays NaN");
  for (const [x, bits] of cases.filter(([x]) => Number.isFinite(x) && Math.abs(x) <= 65504)) {
    // Decoding gives back x up to half precision (relative 2^-11, or one subnormal step).
    assert.ok(Math.abs(f16ToF32(bits) - x) <= Math.max(Math.abs(x) * 2 ** -11, 2 ** -25), `f16ToF32(${bits.toString(16)})`);
  }
});

test("Q8_0: an f16 scale max|x|/127 then 32 int8 values, dequantizing to within half a step", () => {
  // Block 0: known values (max 127 → scale exactly 1, so q = round(x)); block 1: small sine values.
  const values = new Float32Array(64);
  for (let i = 0; i < 32; i++) values[i] = i * 4 - 0.4 - 62; // -62.4 … 61.6, plus 127 below
  values[31] = 127;
  for (let i = 32; i < 64; i++) values[i] = Math.sin(i) * 0.01;
  const q = quantizeQ8_0(values);
  assert.equal(q.length, 2 * 34);
  assert.equal(q.readUInt16LE(0), 0x3c00, "scale of block 0 is 1.0");
  assert.equal(q.readInt8(2 + 0), -62);
  assert.equal(q.readInt8(2 + 1), -58);
  assert.equal(q.readInt8(2 + 31), 127);
  const scale1 = f16ToF32(q.readUInt16LE(34));
  const amax1 = Math.max(...values.slice(32).map(Math.abs));
  assert.ok(Math.abs(scale1 - amax1 / 127) <= (amax1 / 127) * 2 ** -10, "block 1 scale");
  const back = dequantizeQ8_0(q);
  for (let i = 0; i < 64; i++) {
    const step = i < 32 ? 1 : scale1;
    assert.ok(Math.abs(back[i]! - values[i]!) <= step * 0.5 + 1e-6, `value ${i}: ${values[i]} → ${back[i]}`);
  }
  assert.deepEqual([...dequantizeQ8_0(quantizeQ8_0(new Float32Array(32)))], new Array(32).fill(0));
  assert.throws(() => quantizeQ8_0(new Float32Array(31)), /multiple of 32/);
});
