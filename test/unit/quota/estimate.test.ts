// Pre-flight token estimates (src/quota/estimate.ts).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { get_encoding } from "tiktoken";
import {
  countTextTokens,
  DEFAULT_CHAT_COMPLETION_TOKENS,
  EXACT_CHARS_PER_ESTIMATE,
  estimateChatTokens,
  estimateCompletionTokens,
  freeEncoder,
  REPLY_PRIMING_TOKENS,
  TOKENS_PER_MESSAGE,
} from "../../../src/quota/estimate.js";
import { parseChatRequest } from "../../../src/openai/chat/protocol.js";
import { DEFAULT_COMPLETION_MAX_TOKENS, parseCompletionRequest } from "../../../src/openai/completions/protocol.js";

after(() => freeEncoder());

describe("countTextTokens", () => {
  test("counts cl100k_base tokens", () => {
    assert.equal(countTextTokens(""), 0);
    assert.equal(countTextTokens("hello world"), 2);
    assert.equal(countTextTokens("hello world ".repeat(100).trim()), 200);
  });

  test("special-token text is plain text, not an error", () => {
    assert.ok(countTextTokens("<|endoftext|>") > 1);
  });

  test("long text is counted as if whole, and a long run without spaces stays fast", () => {
    const prose = "The quick brown fox jumps over the lazy dog.\nIt  was\tnot amused. ".repeat(200);
    const reference = get_encoding("cl100k_base");
    try {
      assert.equal(countTextTokens(prose), reference.encode_ordinary(prose).length, "cutting before whitespace leaves the pieces unchanged");
    } finally {
      reference.free();
    }
    const t0 = performance.now();
    const run = countTextTokens("a".repeat(200_000));
    assert.ok(run > 20_000 && run < 30_000, `about 8 letters per token, got ${run}`);
    assert.ok(performance.now() - t0 < 2000, "O(length), not quadratic");
    assert.equal(countTextTokens("😀".repeat(1000)), countTextTokens("😀".repeat(500)) * 2, "never cuts inside a surrogate pair");
  });

  test("beyond the exact-counting budget, tokens are extrapolated closely and quickly", () => {
    const prose = "The quick brown fox jumps over the lazy dog. ".repeat(30_000); // 1.35 M characters
    assert.ok(prose.length > 4 * EXACT_CHARS_PER_ESTIMATE);
    const t0 = performance.now();
    const estimate = countTextTokens(prose);
    const elapsedMs = performance.now() - t0;
    assert.ok(Math.abs(estimate - 10 * 30_000) <= 30, `within 0.01% of the exact 300000, got ${estimate}`);
    assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
  });

  test("freeEncoder can be followed by more counting", () => {
    freeEncoder();
    assert.equal(countTextTokens("hello world"), 2);
  });
});

describe("estimateChatTokens", () => {
  test("counts content, per-message template tokens and max_tokens", () => {
    const messages = [
      { role: "system", content: "You are terse." },
      { role: "user", content: "hello world" },
    ];
    const prompt = countTextTokens("You are terse.") + countTextTokens("hello world") + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS;
    assert.equal(estimateChatTokens(messages, 100), prompt + 100);
    assert.equal(estimateChatTokens(messages, null), prompt + DEFAULT_CHAT_COMPLETION_TOKENS);
    assert.equal(estimateChatTokens(messages, null, { defaultCompletionTokens: 10 }), prompt + 10);
  });

  test("n choices: the prompt once, the completion budget n times", () => {
    const messages = [{ role: "user", content: "hello world" }];
    const prompt = estimateChatTokens(messages, 0);
    assert.equal(estimateChatTokens(messages, 100, { choices: 4 }), prompt + 4 * 100);
    assert.equal(estimateChatTokens(messages, null, { choices: 3 }), prompt + 3 * DEFAULT_CHAT_COMPLETION_TOKENS);
  });

  test("grows with the prompt and with max_tokens", () => {
    const short = [{ content: "hi" }];
    const long = [{ content: "hi ".repeat(500) }];
    assert.ok(estimateChatTokens(long, 16) >= estimateChatTokens(short, 16) + 400);
    assert.equal(estimateChatTokens(short, 1016) - estimateChatTokens(short, 16), 1000);
    assert.ok(estimateChatTokens([...short, ...short], 16) > estimateChatTokens(short, 16), "each message costs template tokens");
    const many = Array.from({ length: 20 }, () => ({ content: "a b c d ".repeat(25_000) })); // 4 M characters
    const t0 = performance.now();
    const big = estimateChatTokens(many, 0);
    assert.ok(performance.now() - t0 < 1500, "the exact-counting budget is shared by the request's messages");
    assert.ok(Math.abs(big - (20 * 100_000 + 20 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS)) < 100, `got ${big}`);
  });

  test("reads text parts, refusals and names; a null content costs only the template", () => {
    const parts = [
      {
        content: [
          { type: "text", text: "hello" },
          { type: "text", text: " world" },
        ],
      },
    ];
    assert.equal(estimateChatTokens(parts, 0), estimateChatTokens([{ content: "hello world" }], 0));
    assert.equal(estimateChatTokens([{ content: null }], 0), TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS);
    assert.ok(estimateChatTokens([{ content: null, refusal: "I cannot help with that." }], 0) > TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS);
    assert.ok(estimateChatTokens([{ content: "x", name: "alice" }], 0) > estimateChatTokens([{ content: "x" }], 0));
  });
});

describe("estimateCompletionTokens", () => {
  test("a string prompt: its tokens + max_tokens", () => {
    assert.equal(estimateCompletionTokens("hello world", 50), 52);
  });

  test("an array of prompts generates once per prompt", () => {
    assert.equal(estimateCompletionTokens(["hello world", "hello"], 10), 2 + 1 + 2 * 10);
  });

  test("n choices per prompt: each prompt once, the completion budget prompts × n times", () => {
    assert.equal(estimateCompletionTokens(["hello world", "hello"], 10, 3), 2 + 1 + 2 * 3 * 10);
    assert.equal(estimateCompletionTokens("hello world", 16, 2), 2 + 2 * 16);
  });

  test("token-id arrays count as their length", () => {
    assert.equal(estimateCompletionTokens([1, 2, 3, 4], 10), 4 + 10);
    assert.equal(
      estimateCompletionTokens(
        [
          [1, 2],
          [3, 4, 5],
        ],
        10,
      ),
      5 + 2 * 10,
    );
  });
});

describe("on validated requests", () => {
  test("takes a parsed chat request's messages and a parsed completion request's prompt as they are", () => {
    const chat = parseChatRequest({
      model: "m",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: [{ type: "text", text: "hello world" }] },
      ],
      max_tokens: 64,
    });
    const expected = countTextTokens("Be brief.") + 2 + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS + 64;
    assert.equal(estimateChatTokens(chat.messages, chat.max_completion_tokens ?? chat.max_tokens ?? null), expected);
    const completion = parseCompletionRequest({ model: "m", prompt: [[1, 2, 3]], max_tokens: 5 });
    assert.equal(estimateCompletionTokens(completion.prompt, completion.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS), 3 + 5);
  });
});
