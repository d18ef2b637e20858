// StopMatcher: stop strings with partial-match hold-back (engine/stops.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { StopMatcher } from "../../../engine/stops.js";
import { seededRandom } from "../../../bench/random.js";

interface Fed {
  /** The text of every push() result, including the one that stopped. */
  emitted: string[];
  stopped: boolean;
  /** flush() after the last push (also after a stop, where it must be ""). */
  flushed: string;
}

function feed(stops: readonly string[], pieces: readonly string[]): Fed {
  const m = new StopMatcher(stops);
  const emitted: string[] = [];
  let stopped = false;
  for (const p of pieces) {
    const r = m.push(p);
    emitted.push(r.text);
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  return { emitted, stopped, flushed: m.flush() };
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */

/** Splits `text` at random code-point boundaries (the detokenizer never splits a character). */
function randomSplit(text: string, rand: () => number, maxPiece = 5): string[] {
  const chars = Array.from(text);
  const pieces: string[] = [];
  for (let i = 0; i < chars.length; ) {
    const n = 1 + Math.floor(rand() * maxPiece);
    pieces.push(chars.slice(i, i + n).join(""));
    i += n;
  }
  return pieces;
}

describe("StopMatcher basics", () => {
  test("with no stop strings every push passes straight through, nothing is held", () => {
    const m = new StopMatcher([]);
    assert.deepEqual(m.push("E"), { text: "E", stopped: false });
    assert.deepEqual(m.push("ND"), { text: "ND", stopped: false });
    assert.deepEqual(m.push(""), { text: "", stopped: false });
    assert.equal(m.flush(), "");
  });

  test("empty stop strings are ignored (they neither stop nor hold anything)", () => {
    assert.deepEqual(feed([""], ["abc", "def"]), { emitted: ["abc", "def"], stopped: false, flushed: "" });
    assert.deepEqual(feed(["", "X"], ["abXcd"]), { emitted: ["ab"], stopped: true, flushed: "" });
  });

  test("text that cannot start a stop is released immediately", () => {
    assert.deepEqual(feed(["END"], ["hello", " world"]), { emitted: ["hello", " world"], stopped: false, flushed: "" });
  });

  test("a stop split one character per push never leaks a partial prefix", () => {
    const m = new StopMatcher(["END"]);
    assert.deepEqual(m.push("ok E"), { text: "ok ", stopped: false });
    assert.deepEqual(m.push("N"), { text: "", stopped: false });
    assert.deepEqual(m.push("D"), { text: "", stopped: true });
    assert.equal(m.flush(), "", "the matched stop is not released by flush");
  });

  test("a stop split across many pushes (EN + D) stops with nothing of it emitted", () => {
    assert.deepEqual(feed(["END"], ["x", "EN", "D", "more"]), { emitted: ["x", "", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["<|end|>"], ["a<", "|", "en", "d", "|>", "b"]), {
      emitted: ["a", "", "", "", ""],
      stopped: true,
      flushed: "",
    });
  });

  test("held text that diverges from every stop is released in full", () => {
    const m = new StopMatcher(["END"]);
    assert.deepEqual(m.push("a E"), { text: "a ", stopped: false });
    assert.deepEqual(m.push("N"), { text: "", stopped: false });
    assert.deepEqual(m.push("X"), { text: "ENX", stopped: false });
    assert.deepEqual(m.push("b"), { text: "b", stopped: false });
    assert.equal(m.flush(), "");
  });

  test("on divergence only the part that can no longer start a stop is released", () => {
    // "EE": the first E can no longer start END, the second one still can.
    const m = new StopMatcher(["END"]);
    assert.deepEqual(m.push("E"), { text: "", stopped: false });
    assert.deepEqual(m.push("E"), { text: "E", stopped: false });
    assert.deepEqual(m.push("ND"), { text: "", stopped: true });
  });

  test("the earliest of several stops wins, whatever their order in the list", () => {
    assert.deepEqual(feed(["world", "lo"], ["hello world"]), { emitted: ["hel"], stopped: true, flushed: "" });
    assert.deepEqual(feed(["lo", "world"], ["hello world"]), { emitted: ["hel"], stopped: true, flushed: "" });
    assert.deepEqual(feed(["zzz", "o w", "d"], ["hell", "o world"]), { emitted: ["hell", ""], stopped: true, flushed: "" });
  });

  test("a held prefix of one stop is released when a different stop completes later", () => {
    // "ST" could start STOP; the text then reaches END, which is the first complete stop.
    assert.deepEqual(feed(["STOP", "END"], ["aST", "xEND"]), { emitted: ["a", "STx"], stopped: true, flushed: "" });
  });

  test("overlapping stops ab and b", () => {
    assert.deepEqual(feed(["ab", "b"], ["xab"]), { emitted: ["x"], stopped: true, flushed: "" });
    assert.deepEqual(feed(["ab", "b"], ["xb"]), { emitted: ["x"], stopped: true, flushed: "" });
    assert.deepEqual(feed(["ab", "b"], ["xa", "b"]), { emitted: ["x", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["b", "ab"], ["a", "a", "b"]), { emitted: ["", "a", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["ab", "b"], ["xa", "c"]), { emitted: ["x", "ac"], stopped: false, flushed: "" });
  });

  test("self-overlapping stop (aab in aaab) cuts at the real occurrence", () => {
    assert.deepEqual(feed(["aab"], ["a", "a", "a", "b"]), { emitted: ["", "", "a", ""], stopped: true, flushed: "" });
  });

  test("text after the stop, in the same push or later, is dropped", () => {
    const m = new StopMatcher(["END"]);
    assert.deepEqual(m.push("keep ENDdrop this"), { text: "keep ", stopped: true });
    assert.equal(m.flush(), "");
  });

  test("flush() releases held text when generation ends for another reason", () => {
    const m = new StopMatcher(["</end>"]);
    assert.deepEqual(m.push("text </e"), { text: "text ", stopped: false });
    assert.equal(m.flush(), "</e");
    assert.equal(m.flush(), "", "a second flush has nothing left");
  });

  test("flush() with nothing held returns an empty string", () => {
    const m = new StopMatcher(["END"]);
    assert.deepEqual(m.push("abc"), { text: "abc", stopped: false });
    assert.equal(m.flush(), "");
  });

  test("a stop at the very start emits nothing", () => {
    assert.deepEqual(feed(["STOP"], ["STOP now"]), { emitted: [""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["STOP"], ["S", "TOP"]), { emitted: ["", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["\n"], ["\nhello"]), { emitted: [""], stopped: true, flushed: "" });
  });

  test("a push that exactly equals the stop string stops with empty text", () => {
    const m = new StopMatcher(["###"]);
    assert.deepEqual(m.push("abc"), { text: "abc", stopped: false });
    assert.deepEqual(m.push("###"), { text: "", stopped: true });
  });

  test("multi-character unicode stops (astral and combining) are matched and held", () => {
    assert.deepEqual(feed(["🦙🦙"], ["a🦙", "🦙b"]), { emitted: ["a", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["🦙🦙"], ["a🦙", "x"]), { emitted: ["a", "🦙x"], stopped: false, flushed: "" });
    assert.deepEqual(feed(["fin…"], ["c'est la fin", "…", " !"]), { emitted: ["c'est la ", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["日本語"], ["これは日本", "語です"]), { emitted: ["これは", ""], stopped: true, flushed: "" });
    assert.deepEqual(feed(["é"], ["caf", "é au lait"]), { emitted: ["caf", ""], stopped: true, flushed: "" });
  });

  test("the hold-back never exceeds the longest stop minus one character", () => {
    const m = new StopMatcher(["aaaa"]);
    assert.deepEqual(m.push("aaa"), { text: "", stopped: false });
    assert.deepEqual(m.push("c"), { text: "aaac", stopped: false });
    const n = new StopMatcher(["xy", "abcdef"]);
    assert.deepEqual(n.push("zzabcde"), { text: "zz", stopped: false });
    assert.equal(n.flush(), "abcde");
  });
});

describe("StopMatcher properties over random splits", () => {
  // A pool of stops where no stop occurs strictly inside another one (ending
  // before it ends), so "the first stop" is the same whichever way the text is
  // split into pushes. ("b" is a suffix of "ab": both end together.)
  const POOL = ["END", "STOP", "ab", "b", "🦙🦙", "é!", "xyzzy", "\n\n", "</s>"];
  const ALPHABET = ["a", "b", "E", "N", "D", "S", "T", "O", "P", "🦙", "é", "!", "x", "y", "z", " ", "\n", "<", "/", "s", ">", "q"];

  /** Where the text must be cut: the first stop to complete (earliest end), the earliest-starting one on a tie. */
  function referenceCut(text: string, stops: readonly string[]): number {
    let bestEnd = Infinity;
    let bestAt = -1;
    for (const s of stops) {
      const at = text.indexOf(s);
      if (at === -1) continue;
      const end = at + s.length;
      if (end < bestEnd || (end === bestEnd && at < bestAt)) {
        bestEnd = end;
        bestAt = at;
      }
    }
    return bestAt;
  }

  /** Longest suffix of `s`, shorter than the longest stop, that is a proper prefix of a stop. */
  function referenceHold(s: string, stops: readonly string[]): number {
    const maxLen = Math.max(0, ...stops.map((x) => x.length));
    for (let len = Math.min(s.length, maxLen - 1); len > 0; len--) {
      const suffix = s.slice(s.length - len);
      if (stops.some((x) => x.startsWith(suffix))) return len;
    }
    return 0;
  }

  test("emitted text is exactly the text before the first stop, never a partial stop, for 2000 random cases", () => {
    const rand = seededRandom(0xc0ffee);
    let stoppedCases = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const stops = POOL.filter(() => rand() < 0.4);
      if (stops.length === 0) stops.push(POOL[Math.floor(rand() * POOL.length)]!);
      let text = "";
      const parts = 1 + Math.floor(rand() * 8);
      for (let p = 0; p < parts; p++) {
        if (rand() < 0.25) text += stops[Math.floor(rand() * stops.length)]!;
        else text += ALPHABET[Math.floor(rand() * ALPHABET.length)]!;
      }
      const pieces = randomSplit(text, rand);
      const cut = referenceCut(text, stops);
      const expected = cut === -1 ? text : text.slice(0, cut);
      const label = JSON.stringify({ stops, pieces });

      const m = new StopMatcher(stops);
      let out = "";
      let consumed = "";
      let stopped = false;
      for (const piece of pieces) {
        consumed += piece;
        const r = m.push(piece);
        out += r.text;
        // Never ahead of the cut: no emitted string ends in (or contains) the start of the stop that completes.
        assert.ok(expected.startsWith(out), `emitted ${JSON.stringify(out)} is not a prefix of ${JSON.stringify(expected)}: ${label}`);
        if (cut !== -1) assert.ok(out.length <= cut, label);
        if (r.stopped) {
          stopped = true;
          break;
        }
        // And never behind: only what could still start a stop is held back.
        assert.equal(out, consumed.slice(0, consumed.length - referenceHold(consumed, stops)), label);
      }
      if (!stopped) out += m.flush();
      assert.equal(stopped, cut !== -1, label);
      assert.equal(out, expected, label);
      if (stopped) stoppedCases++;
    }
    assert.ok(stoppedCases > 500, `the generator should exercise stops often (got ${stoppedCases})`);
  });

  test("the same text gives the same output however it is split", () => {
    const rand = seededRandom(42);
    const text = "the quick brown fox says é! then END of story STOP and more";
    const stops = ["STOP", "END", "é!"];
    const expected = "the quick brown fox says ";
    for (let trial = 0; trial < 300; trial++) {
      const r = feed(stops, randomSplit(text, rand, 1 + Math.floor(rand() * 10)));
      assert.equal(r.stopped, true);
      assert.equal(r.emitted.join(""), expected);
      assert.equal(r.flushed, "");
    }
  });
});
