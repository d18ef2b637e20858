// Summary statistics for latency samples. Pure functions, no I/O.
//
// Percentiles use linear interpolation between closest ranks (numpy's default,
// "type 7"): rank = p/100 × (n − 1), and a fractional rank blends its two
// neighbours. So p50 of [1, 2] is 1.5, and p99 of few samples sits just below
// the maximum instead of snapping to it as nearest-rank would.

/** The p-th percentile (0 ≤ p ≤ 100) of `samples`; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile wants 0..100, got ${p}`);
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** The median, i.e. the interpolated 50th percentile: [1, 2, 3, 4] gives 2.5. */
export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** Arithmetic mean; NaN when there are no samples. */
export function mean(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  return samples.reduce((a, b) => a + b, 0) / samples.length;
}

export interface Summary {
  p50: number;
  p99: number;
  mean: number;
}

export function summarize(samples: readonly number[]): Summary {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), mean: mean(samples) };
}
