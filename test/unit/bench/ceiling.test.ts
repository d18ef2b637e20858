// The pure part of the ceiling; runCeiling itself needs a model and is checked
// by running it (see the commit message for numbers).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Token } from "node-llama-cpp";
import { ceilingContextSize, randomPrompt } from "../../../bench/ceiling.js";

const vocab = Array.from({ length: 100 }, (_, i) => (i + 300) as Token);
const BOS = 1 as Token;

test("random prompts have exactly the asked length, BOS included, and only vocabulary tokens", () => {
  const p = randomPrompt(vocab, BOS, 32, 0);
  assert.equal(p.length, 32);
  assert.equal(p[0], BOS);
  assert.ok(p.slice(1).every((t) => vocab.includes(t)));
  assert.equal(randomPrompt(vocab, null, 32, 0).length, 32);
  assert.ok(randomPrompt(vocab, null, 32, 0).every((t) => vocab.includes(t)));
  assert.deepEqual(randomPrompt(vocab, BOS, 1, 0), [BOS]);
});

test("random prompts are deterministic per salt and differ right after BOS", () => {
  assert.deepEqual(randomPrompt(vocab, BOS, 16, 5), randomPrompt(vocab, BOS, 16, 5));
  const firsts = new Set(Array.from({ length: vocab.length }, (_, salt) => randomPrompt(vocab, BOS, 16, salt)[1]));
  assert.equal(firsts.size, vocab.length);
});

test("the ceiling's context per sequence is the one asked for, or the least the shape needs", () => {
  assert.equal(ceilingContextSize({ promptTokens: 32, maxTokens: 64, contextPerSequence: null }), 160);
  assert.equal(ceilingContextSize({ promptTokens: 32, maxTokens: 64, contextPerSequence: 256 }), 256);
  assert.equal(ceilingContextSize({ promptTokens: 32, maxTokens: 64, contextPerSequence: 96 }), 96);
  assert.throws(() => ceilingContextSize({ promptTokens: 32, maxTokens: 64, contextPerSequence: 95 }), /cannot hold 32 prompt \+ 64 output tokens/);
});
