// The bucket OpenAI meters RPM and TPM with: capacity = the per-minute limit,
// refilling continuously at limit / 60 s (not a window that resets on the
// minute). remaining = floor(level); reset = time until the bucket is full.
//
// Stored as the deficit (capacity − level) scaled by 60 000: the scaled deficit
// drains by exactly `limitPerMinute` per millisecond, so with integer
// milliseconds and integer amounts every value stays an integer. Floats would
// let `remaining` flicker (9.999… → 9) or trip a limit one unit early.
// Pure functions over plain data; the ledger owns the state.

export const MS_PER_MINUTE = 60_000;

export interface Bucket {
  /** (capacity − level) × 60 000; ≥ 0. May exceed capacity × 60 000 after an overcharge. */
  readonly scaledDeficit: number;
  /** Clock time (ms) the deficit was computed at. */
  readonly atMs: number;
}

export function fullBucket(nowMs: number): Bucket {
  return { scaledDeficit: 0, atMs: nowMs };
}

/**
 * The bucket at `nowMs`, refilled at `limitPerMinute` / minute. An unlimited
 * dimension (null) is not metered, so its bucket is always full. A clock that
 * steps backwards refills nothing (and is never "un-refilled").
 */
export function refilled(b: Bucket, limitPerMinute: number | null, nowMs: number): Bucket {
  if (limitPerMinute === null) return fullBucket(Math.max(b.atMs, nowMs));
  const elapsedMs = Math.max(0, nowMs - b.atMs);
  return { scaledDeficit: Math.max(0, b.scaledDeficit - elapsedMs * limitPerMinute), atMs: Math.max(b.atMs, nowMs) };
}

/** Takes `amount` from the bucket; a negative amount refunds, never above full. */
export function charged(b: Bucket, amount: number): Bucket {
  return { scaledDeficit: Math.max(0, b.scaledDeficit + amount * MS_PER_MINUTE), atMs: b.atMs };
}

/** Units taken and not yet refilled: capacity − floor(level), so `used + remaining === limit` until an overcharge. */
export function usedOf(b: Bucket): number {
  return Math.ceil(b.scaledDeficit / MS_PER_MINUTE);
}

/** floor(level), never negative. */
export function remainingOf(b: Bucket, limitPerMinute: number): number {
  return Math.max(0, limitPerMinute - usedOf(b));
}

/** Milliseconds until the bucket is full again (0 when full). */
export function resetMsOf(b: Bucket, limitPerMinute: number): number {
  if (b.scaledDeficit === 0) return 0;
  // A zero limit never refills; Infinity is not a header value, a minute is.
  if (limitPerMinute <= 0) return MS_PER_MINUTE;
  return Math.ceil(b.scaledDeficit / limitPerMinute);
}

/**
 * Milliseconds until `amount` fits (0: it fits now). A request that needs
 * exactly the level fits. Callers check `amount > limit` (never fits) first.
 */
export function waitMsFor(b: Bucket, limitPerMinute: number, amount: number): number {
  const excess = b.scaledDeficit + (amount - limitPerMinute) * MS_PER_MINUTE;
  if (excess <= 0) return 0;
  if (limitPerMinute <= 0) return Number.POSITIVE_INFINITY;
  return Math.ceil(excess / limitPerMinute);
}
