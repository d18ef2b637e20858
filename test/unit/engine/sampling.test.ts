// engine/sampling.ts: the pieces that need no model.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { choiceSeed, samplerSeed, samplerTopK } from "../../../engine/sampling.js";

describe("samplerTopK", () => {
  test("a positive top_k is passed on", () => {
    assert.equal(samplerTopK(1), 1);
    assert.equal(samplerTopK(40), 40);
  });

  test("no top_k, or 0, leaves the sampler out (null), never node-llama-cpp's default or a whole-vocabulary sort", () => {
    assert.equal(samplerTopK(null), null);
    assert.equal(samplerTopK(0), null);
  });
});

describe("samplerSeed and choiceSeed", () => {
  test("map any integer seed to the sampler's unsigned 32 bits", () => {
    assert.equal(samplerSeed(7), 7);
    assert.equal(samplerSeed(-1), 2 ** 32 - 1);
    assert.equal(samplerSeed(2 ** 32 + 5), 5);
    assert.equal(choiceSeed(2 ** 32 - 1, 1), 0);
    const random = samplerSeed(null);
    assert.ok(Number.isInteger(random) && random >= 0 && random < 2 ** 32);
  });
});
