// src/openai/structured/integerRange.ts: the digit-by-digit alternatives spell
// every integer of [min, max] and nothing else, checked with a plain matcher.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { digitRunsGbnf, integerRange, matchesRuns } from "../../../src/openai/structured/integerRange.js";

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
// Bounds of every size: small ones around zero, and any up to 2^53 (zod's z.number().int()).
const bound = fc.oneof(fc.bigInt({ min: -200n, max: 200n }), fc.bigInt({ min: -SAFE, max: SAFE }), fc.constantFrom(-SAFE, SAFE, 0n, 9n, 10n, -10n, 99n, 100n));
const range = fc.tuple(bound, bound).map(([a, b]): [bigint, bigint] => (a <= b ? [a, b] : [b, a]));

describe("integerRange", () => {
  test("every integer of the range is spelt, its neighbours outside are not", () => {
    fc.assert(
      fc.property(range, fc.array(fc.bigInt({ min: 0n, max: 1n << 60n }), { maxLength: 8 }), ([min, max], offsets) => {
        const runs = integerRange(min, max);
        const inside = [min, max, ...offsets.map((o) => min + (o % (max - min + 1n)))];
        for (const v of inside) assert.ok(matchesRuns(runs, v.toString()), `${v} in [${min}, ${max}]: ${digitRunsGbnf(runs)}`);
        for (const v of [min - 1n, max + 1n, min - 10n, max + 10n, ...offsets.map((o) => max + 1n + o), ...offsets.map((o) => min - 1n - o)]) {
          assert.ok(!matchesRuns(runs, v.toString()), `${v} outside [${min}, ${max}]: ${digitRunsGbnf(runs)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("small ranges, exhaustively: exactly the range, each value by one alternative only", () => {
    fc.assert(
      fc.property(fc.tuple(fc.integer({ min: -1200, max: 1200 }), fc.integer({ min: 0, max: 1300 })), ([min, width]) => {
        const max = min + width;
        const runs = integerRange(BigInt(min), BigInt(max));
        for (let v = min - 30; v <= max + 30; v++) {
          const hits = runs.filter((r) => matchesRuns([r], String(v))).length;
          assert.equal(hits, v >= min && v <= max ? 1 : 0, `${v} in [${min}, ${max}]: ${digitRunsGbnf(runs)}`);
        }
      }),
      { numRuns: 300 },
    );
  });

  test("non-canonical spellings are never produced: no leading zeros, no -0", () => {
    const runs = integerRange(-1000n, 1000n);
    for (const text of ["-0", "00", "01", "-01", "0100", "+1", ""]) assert.ok(!matchesRuns(runs, text), text);
    assert.ok(matchesRuns(runs, "0"));
  });

  test("an empty range has no alternative; the GBNF is compact", () => {
    assert.deepEqual(integerRange(5n, 4n), []);
    assert.equal(digitRunsGbnf(integerRange(0n, 5n)), "[0-5]");
    assert.equal(digitRunsGbnf(integerRange(-3n, -1n)), '"-" [1-3]');
    assert.equal(digitRunsGbnf(integerRange(10n, 99n)), "[1-9] [0-9]");
    assert.equal(digitRunsGbnf(integerRange(0n, 9999n)), "[0-9] | [1-9] [0-9] | [1-9] [0-9]{2} | [1-9] [0-9]{3}");
    // zod's int bounds: a handful of alternatives per sign, not one per value.
    assert.ok(integerRange(-SAFE, SAFE).length < 100);
  });
});
