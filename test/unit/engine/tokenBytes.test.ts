// Token text and bytes from GGUF vocabulary metadata (engine/tokenBytes.ts),
// with fake vocabularies: SentencePiece, byte-level BPE, and the fallback.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gpt2UnicodeToByte, TokenPieces, tokenString } from "../../../engine/tokenBytes.js";

const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const BYTE = 6;

const noFallback = (t: number): string => assert.fail(`fallback asked for token ${t}`);

test("SentencePiece: ▁ is a space, <0xHH> is one byte, control and unknown tokens have no bytes", () => {
  const pieces = new TokenPieces(
    {
      model: "llama",
      tokens: ["<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "▁the", "é", "<|im_end|>"],
      tokenTypes: [UNKNOWN, CONTROL, CONTROL, BYTE, BYTE, NORMAL, NORMAL, USER_DEFINED],
    },
    noFallback,
  );
  assert.deepEqual(pieces.piece(5), { token: " the", bytes: [0x20, 0x74, 0x68, 0x65] });
  assert.deepEqual(pieces.piece(3), { token: "\n", bytes: [0x0a] });
  assert.deepEqual(pieces.piece(6), { token: "é", bytes: [0xc3, 0xa9] });
  // A lone lead byte of a 3-byte character: OpenAI's escaped form.
  assert.deepEqual(pieces.piece(4), { token: "bytes:\\xe2", bytes: [0xe2] });
  assert.deepEqual(pieces.piece(2), { token: "</s>", bytes: null });
  assert.deepEqual(pieces.piece(0), { token: "<unk>", bytes: null });
  assert.deepEqual(pieces.piece(7), { token: "<|im_end|>", bytes: [...Buffer.from("<|im_end|>")] });
});

test("missing token types mean NORMAL", () => {
  const pieces = new TokenPieces({ model: "llama", tokens: ["▁a▁b"] }, noFallback);
  assert.deepEqual(pieces.piece(0), { token: " a b", bytes: [0x20, 0x61, 0x20, 0x62] });
});

test("GPT-2's bytes-to-unicode table inverts to all 256 bytes", () => {
  const table = gpt2UnicodeToByte();
  assert.equal(table.size, 256);
  assert.deepEqual(new Set(table.values()).size, 256);
  assert.equal(table.get("Ġ".codePointAt(0)!), 0x20); // the space
  assert.equal(table.get("Ċ".codePointAt(0)!), 0x0a); // the newline
  assert.equal(table.get("a".codePointAt(0)!), 0x61);
});

test("byte-level BPE: the unicode spelling decodes to raw bytes, partial characters included", () => {
  // "Ġhello" = " hello"; "âĢ" = 0xE2 0x80 (the start of "—", U+2014); "Ķ" = 0x94 completes it.
  const pieces = new TokenPieces(
    { model: "gpt2", pre: "llama-bpe", tokens: ["Ġhello", "âĢ", "Ķ", "<|eot_id|>"], tokenTypes: [NORMAL, NORMAL, NORMAL, CONTROL] },
    noFallback,
  );
  assert.deepEqual(pieces.piece(0), { token: " hello", bytes: [...Buffer.from(" hello")] });
  assert.deepEqual(pieces.piece(1), { token: "bytes:\\xe2\\x80", bytes: [0xe2, 0x80] });
  assert.deepEqual(pieces.piece(2), { token: "bytes:\\x94", bytes: [0x94] });
  assert.equal(Buffer.from([...pieces.piece(1).bytes!, ...pieces.piece(2).bytes!]).toString("utf8"), "—");
  assert.deepEqual(pieces.piece(3), { token: "<|eot_id|>", bytes: null });
});

test("BPE pre-tokenizers that keep ▁ are read as SentencePiece", () => {
  const pieces = new TokenPieces({ model: "gpt2", pre: "gemma4", tokens: ["▁hi"], tokenTypes: [NORMAL] }, noFallback);
  assert.deepEqual(pieces.piece(0), { token: " hi", bytes: [0x20, 0x68, 0x69] });
});

test("other tokenizers, and BPE text outside the byte table, fall back to the model's detokenization", () => {
  const asked: number[] = [];
  const fallback = (t: number) => {
    asked.push(t);
    return `<${t}>`;
  };
  const rwkv = new TokenPieces({ model: "rwkv", tokens: ["x"] }, fallback);
  assert.deepEqual(rwkv.piece(0), { token: "<0>", bytes: [...Buffer.from("<0>")] });
  const none = new TokenPieces(null, fallback);
  assert.deepEqual(none.piece(7), { token: "<7>", bytes: [...Buffer.from("<7>")] });
  // "→" (U+2192) is no byte's GPT-2 spelling.
  const bpe = new TokenPieces({ model: "gpt2", tokens: ["a→"], tokenTypes: [NORMAL] }, fallback);
  assert.deepEqual(bpe.piece(0), { token: "<0>", bytes: [...Buffer.from("<0>")] });
  assert.deepEqual(asked, [0, 7, 0]);
});

test("pieces are computed once per token", () => {
  let calls = 0;
  const pieces = new TokenPieces(null, () => {
    calls++;
    return "x";
  });
  pieces.piece(3);
  pieces.piece(3);
  assert.equal(calls, 1);
});

test("tokenString: valid UTF-8 as text, anything else escaped with lowercase hex", () => {
  assert.equal(tokenString(Uint8Array.from([0x68, 0x69])), "hi");
  assert.equal(tokenString(Uint8Array.from([])), "");
  assert.equal(tokenString(Uint8Array.from([0x61, 0xf0, 0x9f])), "bytes:\\x61\\xf0\\x9f");
  assert.equal(tokenString(Uint8Array.from([0xf0, 0x9f, 0x98, 0x80])), "😀");
});
