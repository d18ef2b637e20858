// embeddingTokenBound (src/openai/embeddings/route.ts): what an embeddings
// request reserves before the worker counts it. It must never be below the
// served model's count (issue 19 item 7), checked here against the real
// tokenizers of the served test models on inputs that cost the most tokens
// per byte (digits, whitespace, unicode), and exact for token ids.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LlamaModel } from "node-llama-cpp";
import { getLlama, type Llama } from "node-llama-cpp";
import { embeddingTokenBound } from "../../../src/openai/embeddings/route.js";
import { MODELS } from "../../integration/helpers/server.js";

const TEXTS = ["1", "12345678901234567890", " 9 9 9 9", "\n\n\n", "hello world", "Ünïcödé ✓ 😀 漢字", "    x", "0".repeat(300), "\t\t \n 7", " "];

describe("embeddingTokenBound", () => {
  test("token ids: exactly their count, plus the BOS / EOS the model adds when they lack them", () => {
    const specials = { bos: 1, eos: null };
    assert.equal(embeddingTokenBound([{ kind: "tokens", tokens: [1, 5, 6] }], specials), 3);
    assert.equal(embeddingTokenBound([{ kind: "tokens", tokens: [5, 6] }], specials), 3);
    assert.equal(embeddingTokenBound([{ kind: "tokens", tokens: [5, 6] }], { bos: 1, eos: 2 }), 4);
    assert.equal(embeddingTokenBound([{ kind: "tokens", tokens: [5, 6] }]), 4, "unknown specials: both assumed");
  });

  test("text: UTF-8 bytes + 1 + the specials, summed over inputs", () => {
    assert.equal(
      embeddingTokenBound(
        [
          { kind: "text", text: "ab" },
          { kind: "text", text: "é" },
        ],
        { bos: 1, eos: null },
      ),
      2 + 2 + 2 + 2,
    );
  });

  describe("is never below the real tokenizers' counts", () => {
    let llama: Llama;
    const models: LlamaModel[] = [];
    before(async () => {
      llama = await getLlama({ build: "never", gpu: false });
      // TinyStories-656K is left out: it cannot tokenize some of these characters at all (SOURCES.md).
      for (const p of [MODELS.stories260K, MODELS.tinyRandom]) models.push(await llama.loadModel({ modelPath: p }));
    });
    after(async () => {
      for (const m of models) await m.dispose();
      await llama?.dispose();
    });

    test("digits, whitespace and unicode on stories260K and the Llama-2 vocabulary", () => {
      for (const model of models) {
        const specials = {
          bos: model.tokens.shouldPrependBosToken ? model.tokens.bos : null,
          eos: model.tokens.shouldAppendEosToken ? model.tokens.eos : null,
        };
        for (const text of TEXTS) {
          const counted = model.tokenize(text, false).length + (specials.bos !== null ? 1 : 0) + (specials.eos !== null ? 1 : 0);
          const bound = embeddingTokenBound([{ kind: "text", text }], specials);
          assert.ok(bound >= counted, `${JSON.stringify(text)}: bound ${bound} < ${counted}`);
        }
      }
    });
  });
});
