// Synthetic models: byte-for-byte deterministic, well-formed (names, shapes,
// metadata), and loaded and run by llama.cpp itself through node-llama-cpp.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { readGguf, TensorType, ValueType } from "../../../models/gguf.js";
import { makeModelMain } from "../../../models/makeModelCli.js";
import { defaultVocabSource, makeSyntheticModel, type MadeModel } from "../../../models/synthetic.js";
import { ensureDefaultSyntheticModel } from "../../../models/syntheticCache.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-synthetic-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

describe("synthetic tiny model", () => {
  let made: MadeModel;
  before(async () => {
    const fractions: number[] = [];
    made = await makeSyntheticModel({ preset: "tiny", outPath: path.join(tmp, "a.gguf"), seed: 0, onProgress: (f) => fractions.push(f) });
    assert.equal(fractions.at(-1), 1);
    assert.ok(
      fractions.every((f, i) => i === 0 || f >= fractions[i - 1]!),
      "progress only grows",
    );
  });

  test("the same seed gives the same bytes; another seed other weights", async () => {
    const again = await makeSyntheticModel({ preset: "tiny", outPath: path.join(tmp, "b.gguf"), seed: 0 });
    const other = await makeSyntheticModel({ preset: "tiny", outPath: path.join(tmp, "c.gguf"), seed: 1 });
    assert.equal(sha256(made.path), sha256(again.path));
    assert.notEqual(sha256(made.path), sha256(other.path));
    assert.equal(fs.existsSync(`${made.path}.tmp`), false);
    assert.equal(made.bytes, fs.statSync(made.path).size);
    assert.ok(made.bytes < 8 * 1024 * 1024, `tiny should be a few MB, is ${made.bytes} bytes`);
    // 2 × 32000 × 64 vocabulary matrices plus two small layers.
    assert.equal(made.parameters, 4_219_200);
  });

  test("is a self-describing llama GGUF with llama.cpp's tensor names and shapes", async () => {
    const g = await readGguf(made.path);
    const meta = (k: string) => g.metadata.get(k)?.value;
    assert.equal(meta("general.architecture"), "llama");
    assert.equal(meta("general.name"), "llamux-synthetic-tiny");
    assert.equal(meta("llama.context_length"), 2048);
    assert.equal(meta("llama.rope.dimension_count"), 16);
    assert.equal(meta("llama.vocab_size"), 32000);
    assert.equal(meta("general.file_type"), 7);
    assert.equal(meta("llamux.synthetic"), true);
    assert.equal(meta("llamux.seed"), 0);
    // Every tokenizer key of the source is copied with its type (the template is ours).
    const source = await readGguf(defaultVocabSource());
    for (const [k, v] of source.metadata) if (k.startsWith("tokenizer.")) assert.deepEqual(g.metadata.get(k), v, k);
    assert.equal(g.metadata.get("tokenizer.chat_template")?.type, ValueType.STRING);
    const dims = new Map(g.tensors.map((t) => [t.name, { dims: t.dims, type: t.type }]));
    assert.equal(g.tensors.length, 3 + 2 * 9);
    assert.deepEqual(dims.get("token_embd.weight"), { dims: [64, 32000], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("output.weight"), { dims: [64, 32000], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("output_norm.weight"), { dims: [64], type: TensorType.F32 });
    assert.deepEqual(dims.get("blk.1.attn_q.weight"), { dims: [64, 64], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.attn_k.weight"), { dims: [64, 32], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.attn_v.weight"), { dims: [64, 32], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.attn_output.weight"), { dims: [64, 64], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.ffn_gate.weight"), { dims: [64, 256], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.ffn_up.weight"), { dims: [64, 256], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.ffn_down.weight"), { dims: [256, 64], type: TensorType.Q8_0 });
    assert.deepEqual(dims.get("blk.1.attn_norm.weight"), { dims: [64], type: TensorType.F32 });
  });

  test("llama.cpp loads it and generates varied tokens greedily", async () => {
    const llama = await getLlama({ build: "never", gpu: false, maxThreads: 2, logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: made.path });
    const context = await model.createContext({ contextSize: 256, threads: { ideal: 2, min: 2 } });
    try {
      const template = (model.fileInfo.metadata as { tokenizer?: { chat_template?: string } }).tokenizer?.chat_template;
      assert.match(template ?? "", /<\|im_start\|>/);
      assert.match(template ?? "", /add_generation_prompt/);
      assert.equal(model.fileInfo.metadata.tokenizer.ggml.tokens.length, 32000);
      const sequence = context.getSequence();
      const prompt = model.tokenize("Hello world");
      assert.ok(prompt.length >= 2);
      const generated: Token[] = [];
      for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
        generated.push(token);
        if (generated.length >= 16) break;
      }
      assert.equal(generated.length, 16);
      assert.ok(generated.every((t) => t >= 0 && t < 32000));
      assert.ok(new Set(generated).size > 1, `all generated tokens are ${generated[0]}`);
    } finally {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    }
  });
});

describe("make-model command and default model cache", () => {
  test("make-model writes the same file as the library; bad arguments exit 2", async () => {
    const a = path.join(tmp, "a.gguf");
    if (!fs.existsSync(a)) await makeSyntheticModel({ preset: "tiny", outPath: a, seed: 0 });
    const out = path.join(tmp, "cli", "m.gguf");
    assert.equal(await makeModelMain(["--out", out, "--seed", "0"]), 0);
    assert.equal(sha256(out), sha256(a));
    assert.equal(await makeModelMain(["--preset", "huge", "--out", out]), 2);
    assert.equal(await makeModelMain(["--preset", "tiny"]), 2);
    assert.equal(await makeModelMain(["--out", out, "--seed", "-1"]), 2);
    assert.equal(await makeModelMain(["--out", out, "--seed", "1.5"]), 2);
    assert.equal(await makeModelMain(["--out", out, "--frobnicate"]), 2);
    assert.equal(await makeModelMain(["--out", out, "--vocab-from", path.join(tmp, "missing.gguf")]), 1);
  });

  test("ensureDefaultSyntheticModel generates once, concurrently safe, and then reuses the file", async () => {
    const dir = path.join(tmp, "models");
    const [p1, p2] = await Promise.all([ensureDefaultSyntheticModel(dir), ensureDefaultSyntheticModel(dir)]);
    assert.equal(p1, p2);
    assert.equal(path.basename(p1), "llamux-synthetic-tiny.gguf");
    assert.deepEqual(fs.readdirSync(dir), ["llamux-synthetic-tiny.gguf"]);
    const mtimeMs = fs.statSync(p1).mtimeMs;
    assert.equal(await ensureDefaultSyntheticModel(dir), p1);
    assert.equal(fs.statSync(p1).mtimeMs, mtimeMs);
    assert.equal(sha256(p1), sha256(path.join(tmp, "a.gguf")));
  });
});
