// Early refusals (engine/promptBounds.ts): prompts that surely cannot fit, logit_bias outside the vocabulary.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { badLogitBias, longestTokenBytes, MAX_LOGIT_BIAS_ENTRIES, promptChars, promptSurelyTooLong, refuseEarly } from "../../../engine/promptBounds.js";
import type { EnginePrompt, EngineRequest } from "../../../engine/protocol.js";

const request = (prompt: EnginePrompt, logitBias: Record<string, number> = {}): EngineRequest => ({
  tenant: "t",
  prompt,
  maxTokens: 1,
  stop: [],
  sampling: {
    temperature: 1,
    topP: 1,
    topK: null,
    minP: null,
    seed: null,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repeatPenalty: null,
    logitBias,
    ignoreEos: false,
  },
  echo: false,
  priority: 0,
});

describe("promptSurelyTooLong", () => {
  test("refuses a text longer than context × the longest token, and only then", () => {
    assert.equal(promptSurelyTooLong(request({ kind: "text", text: "x".repeat(256 * 8) }), 256, 8), null);
    const e = promptSurelyTooLong(request({ kind: "text", text: "x".repeat(256 * 8 + 1) }), 256, 8);
    assert.equal(e?.code, "context_length_exceeded");
    assert.equal(e?.param, "prompt");
    assert.match(e!.message, /256 tokens/);
  });

  test("counts every chat message and tool call; names the messages", () => {
    const chat: EnginePrompt = {
      kind: "chat",
      messages: [
        { role: "user", content: "x".repeat(10) },
        { role: "assistant", content: "", toolCalls: [{ name: "ab", arguments: "{}" }] },
      ],
    };
    assert.equal(promptChars(chat), 14);
    assert.equal(promptSurelyTooLong(request(chat), 2, 7), null);
    assert.equal(promptSurelyTooLong(request(chat), 2, 6)?.param, "messages");
  });

  test("token prompts are counted in tokens; an unknown token length leaves text to the tokenizer", () => {
    assert.equal(promptSurelyTooLong(request({ kind: "tokens", tokens: [1, 2, 3] }), 2, 0)?.code, "context_length_exceeded");
    assert.equal(promptSurelyTooLong(request({ kind: "text", text: "x".repeat(100) }), 2, 0), null);
  });
});

describe("longestTokenBytes", () => {
  test("is the longest UTF-8 spelling in the vocabulary", () => {
    assert.equal(longestTokenBytes(["a", "▁the", "<0x0A>"]), 6);
    assert.equal(longestTokenBytes([]), 1);
  });
});

describe("badLogitBias", () => {
  test("refuses an id outside the vocabulary, naming it", () => {
    assert.equal(badLogitBias({ "511": 1 }, 512), null);
    const e = badLogitBias({ "5": 1, "512": -100 }, 512);
    assert.equal(e?.code, "invalid_value");
    assert.equal(e?.param, "logit_bias.512");
  });

  test("refuses more than MAX_LOGIT_BIAS_ENTRIES entries without reading them all", () => {
    const many = Object.fromEntries(Array.from({ length: MAX_LOGIT_BIAS_ENTRIES + 1 }, (_, i) => [String(i), 1]));
    assert.equal(badLogitBias(many, 1e6)?.param, "logit_bias");
    delete many[String(MAX_LOGIT_BIAS_ENTRIES)];
    assert.equal(badLogitBias(many, 1e6), null);
  });

  test("refuseEarly checks both", () => {
    const model = { contextPerSlot: 4, vocabSize: 10, maxTokenBytes: 2 };
    assert.equal(refuseEarly(request({ kind: "text", text: "hello" }, { "3": 1 }), model), null);
    assert.equal(refuseEarly(request({ kind: "text", text: "hello" }, { "10": 1 }), model)?.param, "logit_bias.10");
    assert.equal(refuseEarly(request({ kind: "text", text: "123456789" }), model)?.code, "context_length_exceeded");
  });
});
