// A small seeded random number generator (mulberry32), so a workload's
// choices (which requests are cancelled, when; arrival gaps) repeat exactly
// for the same --seed.

/** A function returning uniform numbers in [0, 1), determined by `seed`. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Exponentially distributed gap (ms) between Poisson arrivals at `perSecond`. */
export function poissonGapMs(random: () => number, perSecond: number): number {
  return (-Math.log(1 - random()) / perSecond) * 1000;
}
