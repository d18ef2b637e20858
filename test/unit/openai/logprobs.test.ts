// The engine's logprobs entries in OpenAI's chat and completions shapes (src/openai/logprobs.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { TokenLogprob } from "../../../engine/index.js";
import { chatLogprobs, CompletionLogprobs } from "../../../src/openai/logprobs.js";
import { assertMatchesSpec } from "../../helpers/openapi.js";

const entry = (token: string, bytes: number[] | null, logprob: number, top: Array<[string, number]> = []): TokenLogprob => ({
  token,
  bytes,
  logprob,
  top: top.map(([t, lp]) => ({ token: t, bytes: [...Buffer.from(t)], logprob: lp })),
});

test("chat: entries become ChatCompletionTokenLogprob, refusal null, and match the spec", () => {
  const lp = chatLogprobs([
    entry(" the", [32, 116, 104, 101], -0.5, [
      [" the", -0.5],
      [" a", -1.2],
    ]),
  ]);
  assert.deepEqual(lp, {
    content: [
      {
        token: " the",
        logprob: -0.5,
        bytes: [32, 116, 104, 101],
        top_logprobs: [
          { token: " the", logprob: -0.5, bytes: [32, 116, 104, 101] },
          { token: " a", logprob: -1.2, bytes: [32, 97] },
        ],
      },
    ],
    refusal: null,
  });
  const body = {
    id: "c",
    object: "chat.completion",
    created: 1,
    model: "m",
    choices: [{ index: 0, message: { role: "assistant", content: " the", refusal: null }, logprobs: lp, finish_reason: "length" }],
  };
  assertMatchesSpec("CreateChatCompletionResponse", body);
});

test("completions: parallel arrays; top_logprobs holds the top k and the sampled token", () => {
  const b = new CompletionLogprobs();
  const out = b.take([entry("Once", [...Buffer.from("Once")], -1, [[" Once", -0.2]]), entry(" upon", [...Buffer.from(" upon")], -0.3, [[" upon", -0.3]])]);
  assert.deepEqual(out, {
    tokens: ["Once", " upon"],
    token_logprobs: [-1, -0.3],
    top_logprobs: [{ " Once": -0.2, Once: -1 }, { " upon": -0.3 }],
    text_offset: [0, 4],
  });
});

test("completions: text_offset counts characters across chunks, a split character once, at its last token", () => {
  const b = new CompletionLogprobs();
  // "é" (C3 A9) split over two tokens, then "😀" (4 bytes, 2 UTF-16 units, 1 character), then "x".
  const first = b.take([entry("a", [0x61], -1), entry("bytes:\\xc3", [0xc3], -1)]);
  const second = b.take([entry("bytes:\\xa9", [0xa9], -1), entry("😀", [0xf0, 0x9f, 0x98, 0x80], -1), entry("x", [0x78], -1)]);
  assert.deepEqual(first.text_offset, [0, 1]);
  assert.deepEqual(second.text_offset, [1, 2, 3]);
  // A token that writes nothing moves no offset.
  assert.deepEqual(b.take([entry("<s>", null, -5), entry("y", [0x79], -1)]).text_offset, [4, 4]);
});

test("completions: tokens with the same text keep the likelier logprob", () => {
  const out = new CompletionLogprobs().take([
    entry("a", [0x61], -2, [
      ["a", -0.1],
      ["a", -0.7],
    ]),
  ]);
  assert.deepEqual(out.top_logprobs, [{ a: -0.1 }]);
});
