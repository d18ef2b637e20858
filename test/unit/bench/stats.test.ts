import assert from "node:assert/strict";
import { test } from "node:test";
import { mean, median, percentile, summarize } from "../../../bench/stats.js";

test("percentile interpolates linearly between closest ranks", () => {
  assert.equal(percentile([1, 2], 50), 1.5);
  assert.equal(percentile([5, 1, 3], 50), 3);
  assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), 9.1);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([1, 100], 0), 1);
  assert.equal(percentile([1, 100], 100), 100);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("percentile does not reorder its input and rejects out-of-range p", () => {
  const xs = [3, 1, 2];
  percentile(xs, 50);
  assert.deepEqual(xs, [3, 1, 2]);
  assert.throws(() => percentile(xs, 101), RangeError);
  assert.throws(() => percentile(xs, -1), RangeError);
  assert.throws(() => percentile(xs, NaN), RangeError);
});

test("median of odd and even counts", () => {
  assert.equal(median([9, 1, 5]), 5);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

test("mean and summarize", () => {
  assert.equal(mean([1, 2, 3, 6]), 3);
  assert.ok(Number.isNaN(mean([])));
  assert.deepEqual(summarize([10, 20, 30]), { p50: 20, p99: 29.8, mean: 20 });
});
