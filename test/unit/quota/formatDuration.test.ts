// Reset durations as OpenAI writes them (src/quota/formatDuration.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatDuration } from "../../../src/quota/formatDuration.js";

test("formats like OpenAI's x-ratelimit-reset-* values", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [20, "20ms"],
    [999, "999ms"],
    [1000, "1s"],
    [1500, "1.5s"],
    [1001, "1.001s"],
    [6000, "6s"],
    [59_999, "59.999s"],
    [60_000, "1m0s"],
    [90_000, "1m30s"],
    [360_000, "6m0s"],
    [3_600_000, "1h0m0s"],
    [3_723_000, "1h2m3s"],
    [3_723_450, "1h2m3.45s"],
    [26 * 3_600_000, "26h0m0s"],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `formatDuration(${ms})`);
});

test("rounds fractions of a millisecond up, so a client never retries early", () => {
  assert.equal(formatDuration(0.2), "1ms");
  assert.equal(formatDuration(999.5), "1s");
  assert.equal(formatDuration(1000.1), "1.001s");
});

test("negative and non-finite input prints 0s", () => {
  assert.equal(formatDuration(-5), "0s");
  assert.equal(formatDuration(Number.NaN), "0s");
});
