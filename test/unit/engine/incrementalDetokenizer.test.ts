// IncrementalDetokenizer (engine/detokenizer.ts) against two fake vocabularies:
// a byte-level one (tokens are byte sequences, some of them single bytes of a
// multi-byte UTF-8 character) and a SentencePiece-like one ("▁" is a space,
// dropped at the start of a decode that has no context).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IncrementalDetokenizer, type DecodeFn, type Token } from "../../../engine/detokenizer.js";
import { seededRandom } from "../../../bench/random.js";

const REPLACEMENT = "\uFFFD";

// ---- byte-level vocabulary ---------------------------------------------------
// ids 0..255: the single byte; ids >= 1000: multi-byte pieces.
const PIECES: Record<number, readonly number[]> = {
  1000: [...Buffer.from("Hello")],
  1001: [...Buffer.from(" world")],
  1002: [...Buffer.from("!")],
  1003: [...Buffer.from(" café")], // a whole 2-byte char inside a token
  1004: [0x20, 0xe2], // a space + the first byte of "€" (E2 82 AC)
  1005: [0x82, 0xac, 0x21], // the rest of "€" + "!"
  1006: [0xf0, 0x9f], // first half of "🦙" (F0 9F A6 99)
  1007: [0xa6, 0x99], // second half of "🦙"
  1008: [], // a token that renders as nothing (a control token)
};
const bytesOf = (t: Token): readonly number[] => {
  if (t >= 0 && t < 256) return [t];
  const p = PIECES[t];
  if (!p) throw new Error(`unknown token ${t}`);
  return p;
};
// Non-fatal: an incomplete or invalid sequence decodes as U+FFFD. ignoreBOM so a
// window that starts with U+FEFF is not treated differently from a whole decode.
const decodeBytes: DecodeFn = (tokens) =>
  new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(Uint8Array.from(tokens.flatMap((t) => [...bytesOf(t)])));
const utf8 = (s: string): Token[] => [...Buffer.from(s, "utf8")];

// ---- SentencePiece-like vocabulary ------------------------------------------
// Pieces use "▁" for a space; ids 0..255 are byte-fallback tokens (<0xNN>).
const SP: Record<number, string> = {
  300: "▁Once",
  301: "▁upon",
  302: "▁a",
  303: "▁time",
  304: ",",
  305: "▁",
  306: "▁▁code",
  307: "ly",
  308: "▁日本",
};
const spDecode: DecodeFn = (tokens, context) => {
  const bytes: number[] = [];
  for (const t of tokens) {
    if (t < 256) bytes.push(t);
    else {
      const piece = SP[t];
      if (piece === undefined) throw new Error(`unknown token ${t}`);
      bytes.push(...Buffer.from(piece.replaceAll("▁", " "), "utf8"));
    }
  }
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(Uint8Array.from(bytes));
  // Like SentencePiece: the leading space of the first piece is dropped unless there is context.
  return context.length === 0 && text.startsWith(" ") ? text.slice(1) : text;
};

function run(tokens: readonly Token[], decode: DecodeFn = decodeBytes, context: readonly Token[] = []) {
  const d = new IncrementalDetokenizer(decode, context);
  const chunks = tokens.map((t) => d.push(t));
  const flushed = d.flush();
  return { chunks, flushed, text: chunks.join("") + flushed };
}

describe("IncrementalDetokenizer, byte-level vocabulary", () => {
  test("the fake decoder itself behaves as assumed", () => {
    assert.equal(decodeBytes(utf8("é€🦙"), []), "é€🦙");
    assert.equal(decodeBytes([0xc3], []), REPLACEMENT);
    assert.equal(decodeBytes([0xf0, 0x9f, 0xa6], []), REPLACEMENT);
    assert.equal(decodeBytes([1004, 1005], []), " €!");
  });

  test("ASCII word tokens are emitted one by one", () => {
    const r = run([1000, 1001, 1002]);
    assert.deepEqual(r.chunks, ["Hello", " world", "!"]);
    assert.equal(r.flushed, "");
  });

  test("each byte of é (2 bytes), € (3 bytes) and 🦙 (4 bytes) is held until the character is complete", () => {
    assert.deepEqual(run(utf8("é")).chunks, ["", "é"]);
    assert.deepEqual(run(utf8("€")).chunks, ["", "", "€"]);
    assert.deepEqual(run(utf8("🦙")).chunks, ["", "", "", "🦙"]);
    const r = run(utf8("aé€🦙b"));
    assert.deepEqual(r.chunks, ["a", "", "é", "", "", "€", "", "", "", "🦙", "b"]);
    assert.equal(r.flushed, "");
  });

  test("characters split across multi-byte tokens are held, then emitted with what follows", () => {
    // " " + E2 | 82 AC "!" : the space is held with the incomplete euro sign.
    assert.deepEqual(run([1000, 1004, 1005]).chunks, ["Hello", "", " €!"]);
    assert.deepEqual(run([1006, 1007, 1002]).chunks, ["", "🦙", "!"]);
    assert.deepEqual(run([1003, 1006, 1008, 1007]).chunks, [" café", "", "", "🦙"]);
  });

  test("a token that renders as nothing emits nothing and does not disturb what follows", () => {
    const r = run([1000, 1008, 1008, 1001]);
    assert.deepEqual(r.chunks, ["Hello", "", "", " world"]);
    assert.equal(r.flushed, "");
  });

  test("flush() returns U+FFFD for a truly truncated character", () => {
    const r = run([...utf8("ok"), 0xe2, 0x82]);
    assert.deepEqual(r.chunks, ["o", "k", "", ""]);
    assert.equal(r.flushed, REPLACEMENT);
    const r2 = run([1000, 1004]);
    assert.deepEqual(r2.chunks, ["Hello", ""]);
    assert.equal(r2.flushed, ` ${REPLACEMENT}`);
  });

  test("flush() with nothing held returns an empty string, and a second flush too", () => {
    const d = new IncrementalDetokenizer(decodeBytes);
    assert.equal(d.flush(), "", "flush before any token");
    assert.equal(d.push(0x61), "a");
    assert.equal(d.flush(), "");
    assert.equal(d.push(0xc3), "");
    assert.equal(d.flush(), REPLACEMENT);
    assert.equal(d.flush(), "");
  });

  test("invalid bytes are not held forever: they come out as U+FFFD once a valid character follows", () => {
    // 0xFF is never valid; C3 followed by 'x' is an invalid sequence.
    assert.deepEqual(run([0xff, 0x61]).chunks, ["", `${REPLACEMENT}a`]);
    assert.deepEqual(run([0x61, 0xc3, 0x78]).chunks, ["a", "", `${REPLACEMENT}x`]);
  });

  test("a genuine U+FFFD in the text survives (it is only delayed, never lost)", () => {
    const r = run(utf8("a\uFFFDb"));
    assert.equal(r.text, "a\uFFFDb");
    const end = run(utf8("a\uFFFD"));
    assert.equal(end.text, "a\uFFFD");
  });

  test("a long generation reproduces the whole text (windowing loses nothing)", () => {
    const text = "Ünïcödé 🦙🦙 and €uro ".repeat(40);
    const r = run(utf8(text));
    assert.equal(r.text, text);
    assert.ok(r.chunks.every((c) => !c.includes(REPLACEMENT)));
  });

  test("random token sequences: output equals a whole decode, and no chunk has U+FFFD unless the text does", () => {
    const rand = seededRandom(1234);
    const samples = ["a", " ", "é", "€", "🦙", "日", "\u0301", "Z", "\n"];
    const pieceIds = Object.keys(PIECES).map(Number);
    let checkedClean = 0;
    for (let trial = 0; trial < 500; trial++) {
      const tokens: Token[] = [];
      const len = 1 + Math.floor(rand() * 30);
      while (tokens.length < len) {
        const r = rand();
        if (r < 0.6) tokens.push(...utf8(samples[Math.floor(rand() * samples.length)]!));
        else if (r < 0.95) tokens.push(pieceIds[Math.floor(rand() * pieceIds.length)]!);
        else tokens.push(0x80 + Math.floor(rand() * 0x80)); // a stray byte
      }
      const context = rand() < 0.5 ? [] : utf8("ctx");
      const whole = decodeBytes(tokens, context);
      const r = run(tokens, decodeBytes, context);
      assert.equal(r.text, whole, JSON.stringify(tokens));
      if (!whole.includes(REPLACEMENT)) {
        checkedClean++;
        for (const c of r.chunks) assert.ok(!c.includes(REPLACEMENT), `chunk ${JSON.stringify(c)} of ${JSON.stringify(tokens)}`);
        assert.equal(r.flushed, "", "a clean text leaves nothing to flush");
      }
    }
    assert.ok(checkedClean > 100, `enough clean samples (${checkedClean})`);
  });

  test("the decode function is called with a bounded window, not the whole generation", () => {
    let maxWindow = 0;
    const spy: DecodeFn = (tokens, context) => {
      maxWindow = Math.max(maxWindow, tokens.length + context.length);
      return decodeBytes(tokens, context);
    };
    const r = run(utf8("x".repeat(500)), spy);
    assert.equal(r.text, "x".repeat(500));
    assert.ok(maxWindow <= 8, `window stayed small (max ${maxWindow})`);
  });
});

describe("IncrementalDetokenizer, SentencePiece-like vocabulary", () => {
  test("the fake decoder drops the leading space only without context", () => {
    assert.equal(spDecode([301, 302], []), "upon a");
    assert.equal(spDecode([301, 302], [300]), " upon a");
  });

  test("without prompt context the first token's leading space is dropped, later ones kept", () => {
    const r = run([300, 301, 302, 303, 304], spDecode, []);
    assert.deepEqual(r.chunks, ["Once", " upon", " a", " time", ","]);
    assert.equal(r.text, spDecode([300, 301, 302, 303, 304], []));
  });

  test("with prompt context the first generated token keeps its leading space", () => {
    const r = run([301, 302, 303], spDecode, [300]);
    assert.deepEqual(r.chunks, [" upon", " a", " time"]);
    assert.equal(r.text, " upon a time");
  });

  test("a long prompt context works the same (only its tail matters)", () => {
    const r = run([302, 303], spDecode, [300, 304, 300, 304, 300, 304, 301]);
    assert.deepEqual(r.chunks, [" a", " time"]);
  });

  test("a bare space piece and double-space pieces keep every space after the first token", () => {
    const r = run([300, 305, 306, 307], spDecode, []);
    assert.equal(r.text, "Once   codely");
    assert.equal(r.text, spDecode([300, 305, 306, 307], []));
  });

  test("a lone leading space piece with no context renders as nothing, then text follows", () => {
    const r = run([305, 301], spDecode, []);
    assert.equal(r.text, spDecode([305, 301], []));
    assert.equal(r.text, " upon");
  });

  test("byte-fallback tokens inside SentencePiece text are held until the character completes", () => {
    const tokens = [300, ...utf8(" 🦙"), 302];
    const r = run(tokens, spDecode, [303]);
    assert.deepEqual(r.chunks, [" Once", " ", "", "", "", "🦙", " a"]);
    assert.equal(r.text, " Once 🦙 a");
  });

  test("random SentencePiece sequences: output equals a whole decode with the same context", () => {
    const rand = seededRandom(99);
    const ids = Object.keys(SP).map(Number);
    for (let trial = 0; trial < 400; trial++) {
      const tokens: Token[] = [];
      const len = 1 + Math.floor(rand() * 20);
      while (tokens.length < len) {
        if (rand() < 0.7) tokens.push(ids[Math.floor(rand() * ids.length)]!);
        else tokens.push(...utf8(["é", "€", "🦙"][Math.floor(rand() * 3)]!));
      }
      const context = rand() < 0.5 ? [] : [ids[Math.floor(rand() * ids.length)]!];
      const whole = spDecode(tokens, context);
      const r = run(tokens, spDecode, context);
      assert.equal(r.text, whole, JSON.stringify({ tokens, context }));
      for (const c of r.chunks) assert.ok(!c.includes(REPLACEMENT), JSON.stringify({ tokens, c }));
    }
  });
});
