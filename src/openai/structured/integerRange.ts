// The integers of [min, max] as JSON text, digit by digit: a list of
// alternatives, each a fixed sequence of digit sets (after an optional "-"),
// that together spell every integer of the range once and nothing else, in
// JSON's canonical form (no leading zeros, no "-0"). The same idea as
// llama.cpp's json-schema-to-grammar integer ranges: between two numbers of
// the same length, share their common prefix, then split into the lower
// edge's tail, the free middle digits, and the upper edge's tail.
//
// Pure and small (O(digits²) alternatives), so it is tested against a plain
// matcher (matchesRange) rather than through a model.

/** One alternative: an optional minus sign, then one digit set per position ("0-9", "5", "3-7"). */
export interface DigitRun {
  negative: boolean;
  digits: DigitSet[];
}
/** Inclusive digit bounds, lo <= hi, both 0..9. */
export type DigitSet = readonly [lo: number, hi: number];

/** The alternatives spelling exactly the integers of [min, max]; empty when min > max. Bounds are bigints (any size). */
export function integerRange(min: bigint, max: bigint): DigitRun[] {
  if (min > max) return [];
  const out: DigitRun[] = [];
  // Negative part: -y for y in [max(1, -max), -min], written with a minus sign.
  if (min < 0n) {
    const hi = -min;
    const lo = max < 0n ? -max : 1n;
    for (const digits of unsignedRange(lo, hi)) out.push({ negative: true, digits });
  }
  if (max >= 0n) {
    for (const digits of unsignedRange(min > 0n ? min : 0n, max)) out.push({ negative: false, digits });
  }
  return out;
}

/** Non-negative integers in [lo, hi], split by their number of digits. */
function unsignedRange(lo: bigint, hi: bigint): DigitSet[][] {
  const out: DigitSet[][] = [];
  const loLen = lo.toString().length;
  const hiLen = hi.toString().length;
  for (let len = loLen; len <= hiLen; len++) {
    const smallest = len === 1 ? 0n : 10n ** BigInt(len - 1);
    const largest = 10n ** BigInt(len) - 1n;
    const a = lo > smallest ? lo : smallest;
    const b = hi < largest ? hi : largest;
    if (a > b) continue;
    out.push(...sameLength(a.toString(), b.toString()));
  }
  return out;
}

/** Numbers written with as many digits as `a` and `b` (equal lengths, a <= b), from a to b. */
function sameLength(a: string, b: string): DigitSet[][] {
  if (a.length === 0) return [[]];
  const a0 = Number(a[0]);
  const b0 = Number(b[0]);
  const aRest = a.slice(1);
  const bRest = b.slice(1);
  if (a0 === b0) return sameLength(aRest, bRest).map((tail) => [[a0, a0] as DigitSet, ...tail]);
  const free = (n: number): DigitSet[] => Array.from({ length: n }, () => [0, 9] as DigitSet);
  const out: DigitSet[][] = [];
  // The lower edge's first digit, unless its tail is all zeros (then it joins the middle).
  let midLo = a0 + 1;
  if (/^0*$/.test(aRest)) midLo = a0;
  else out.push(...sameLength(aRest, "9".repeat(aRest.length)).map((tail) => [[a0, a0] as DigitSet, ...tail]));
  let midHi = b0 - 1;
  const upperJoins = /^9*$/.test(bRest);
  if (upperJoins) midHi = b0;
  if (midLo <= midHi) out.push([[midLo, midHi], ...free(aRest.length)]);
  if (!upperJoins) out.push(...sameLength("0".repeat(bRest.length), bRest).map((tail) => [[b0, b0] as DigitSet, ...tail]));
  return out;
}

/** The GBNF for a list of runs: each run a sequence of literals and character classes. */
export function digitRunsGbnf(runs: readonly DigitRun[]): string {
  return runs
    .map((run) => {
      const parts: string[] = run.negative ? ['"-"'] : [];
      let i = 0;
      while (i < run.digits.length) {
        const [lo, hi] = run.digits[i]!;
        let j = i + 1;
        while (j < run.digits.length && run.digits[j]![0] === lo && run.digits[j]![1] === hi) j++;
        const one = lo === hi ? `"${lo}"` : `[${lo}-${hi}]`;
        parts.push(j - i > 1 ? `${one}{${j - i}}` : one);
        i = j;
      }
      return parts.join(" ");
    })
    .join(" | ");
}

/** Whether `text` is spelt by one of `runs` (the check the tests hold the builder to). */
export function matchesRuns(runs: readonly DigitRun[], text: string): boolean {
  return runs.some((run) => {
    const body = run.negative ? (text.startsWith("-") ? text.slice(1) : null) : text;
    if (body === null || body.length !== run.digits.length) return false;
    return run.digits.every(([lo, hi], i) => {
      const c = body.charCodeAt(i) - 48;
      return c >= lo && c <= hi;
    });
  });
}
