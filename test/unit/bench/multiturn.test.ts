import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { multiturnTable, summarizeMultiturn, type TurnSample } from "../../../bench/multiturn.js";

const sample = (turn: number, ttftMs: number, prefillTokens: number, ok = true): TurnSample => ({
  tenant: 0,
  conversation: 0,
  turn,
  ok,
  ...(ok ? {} : { error: "HTTP 500" }),
  ttftMs,
  promptTokens: 100 * turn,
  prefillTokens,
});

describe("summarizeMultiturn", () => {
  const samples = [sample(1, 100, 100), sample(1, 300, 100), sample(2, 50, 20), sample(3, 40, 10), sample(4, 60, 30), sample(4, 0, 0, false)];
  const r = summarizeMultiturn(samples, 2);

  test("summarises each turn over its successful requests, counting the failed ones", () => {
    assert.deepEqual(
      r.perTurn.map((t) => [t.turn, t.requests, t.errors, t.ttftMs.mean, t.prefillTokensTotal]),
      [
        [1, 2, 0, 200, 200],
        [2, 1, 0, 50, 20],
        [3, 1, 0, 40, 10],
        [4, 2, 1, 60, 30],
      ],
    );
  });

  test("turns 3 and later are pooled: the steady state once histories are long", () => {
    assert.equal(r.fromTurn3.requests, 2);
    assert.equal(r.fromTurn3.ttftMs.mean, 50);
    assert.equal(r.fromTurn3.prefillTokensTotal, 40);
  });

  test("the table has a row per turn and the pooled row", () => {
    const rows = multiturnTable(r).split("\n");
    assert.equal(rows.length, 2 + 4 + 1);
    assert.match(rows.at(-1)!, /^\| 3\+ \| 2 \| \| 50 \|/);
  });
});
