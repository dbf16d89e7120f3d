/**
 * A deterministic pseudo-random source (mulberry32): numbers in [0, 1) that a seed replays, so a
 * failing reliability run is repeated with its seed and a benchmark's data is the same on every
 * machine.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
