// A small seeded PRNG (mulberry32) for tests that pick random points: the seed is printed, and
// setting it in the environment replays the same choices.

export interface Prng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Uniform integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
}

export const SEED_ENV = 'CVMFS_STRESS_SEED';

/** The seed from $CVMFS_STRESS_SEED (a decimal integer), else a fresh random one. */
export function seedFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env[SEED_ENV];
  if (v === undefined || v === '') return Math.floor(Math.random() * 2 ** 32) >>> 0;
  if (!/^[0-9]+$/.test(v) || Number(v) >= 2 ** 32) throw new Error(`${SEED_ENV}=${v}: expected a decimal integer below 2^32`);
  return Number(v) >>> 0;
}

export function prng(seed: number): Prng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    between: (lo, hi) => lo + int(hi - lo + 1),
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[int(items.length)] as T;
    },
  };
}
