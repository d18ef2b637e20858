import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chooseRestore, decideSave, evictionsFor, MIN_RESTORE_GAIN_TOKENS, MIN_SAVED_TOKENS, type SavedStateView } from "../../../engine/kvIndex.js";

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const state = (id: string, tenant: string, tokens: number[], lastUsed = 0, bytes = 100): SavedStateView => ({ id, tenant, tokens, bytes, lastUsed });

describe("chooseRestore", () => {
  const prompt = range(0, 200);

  test("picks the tenant's state sharing the longest prefix with the prompt", () => {
    const saved = [state("short", "a", range(0, 60)), state("long", "a", [...range(0, 150), 999]), state("other", "a", range(5, 190))];
    assert.deepEqual(chooseRestore(saved, "a", prompt, 0), { id: "long", reuseTokens: 150 });
  });

  test("never offers another tenant's state, however good the match", () => {
    assert.equal(chooseRestore([state("b's", "b", range(0, 200))], "a", prompt, 0), null);
  });

  test("keeps at least one prompt token to evaluate, for the logits", () => {
    assert.deepEqual(chooseRestore([state("all", "a", range(0, 300))], "a", prompt, 0), { id: "all", reuseTokens: 199 });
  });

  test("only when it spares enough over what the slot already reuses", () => {
    const saved = [state("s", "a", range(0, 100))];
    assert.equal(chooseRestore(saved, "a", prompt, 100 - MIN_RESTORE_GAIN_TOKENS + 1), null);
    assert.deepEqual(chooseRestore(saved, "a", prompt, 100 - MIN_RESTORE_GAIN_TOKENS), { id: "s", reuseTokens: 100 });
  });
});

describe("decideSave", () => {
  const cached = range(0, 100);

  test("saves a cache about to be lost, superseding the states it extends", () => {
    const saved = [state("prefix", "a", range(0, 60)), state("diverges", "a", [...range(0, 60), 7]), state("b's prefix", "b", range(0, 60))];
    assert.deepEqual(decideSave(saved, "a", cached, 100), { kind: "save", supersedes: ["prefix"] });
  });

  test("skips what a saved state already holds (a restored conversation that did not move on)", () => {
    assert.deepEqual(decideSave([state("same", "a", range(0, 120))], "a", cached, 100), { kind: "skip" });
    assert.deepEqual(decideSave([state("same but b's", "b", range(0, 120))], "a", cached, 100), { kind: "save", supersedes: [] });
  });

  test("skips when too little would be lost to be worth a file", () => {
    assert.deepEqual(decideSave([], "a", cached, MIN_SAVED_TOKENS - 1), { kind: "skip" });
    assert.deepEqual(decideSave([], "a", range(0, MIN_SAVED_TOKENS - 1), MIN_SAVED_TOKENS - 1), { kind: "skip" });
    assert.equal(decideSave([], "a", cached, MIN_SAVED_TOKENS).kind, "save");
  });
});

describe("evictionsFor", () => {
  const saved = [state("new", "a", [], 3, 40), state("old", "a", [], 1, 40), state("mid", "b", [], 2, 40)];

  test("drops the least recently used until the rest fit", () => {
    assert.deepEqual(evictionsFor(saved, 120), []);
    assert.deepEqual(evictionsFor(saved, 119), ["old"]);
    assert.deepEqual(evictionsFor(saved, 100, 50), ["old", "mid"]);
  });

  test("an incoming state larger than everything evicts everything", () => {
    assert.deepEqual(evictionsFor(saved, 100, 200), ["old", "mid", "new"]);
  });
});
