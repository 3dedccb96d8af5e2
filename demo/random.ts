// Seeded randomness for reproducible demo training.

export type Random = () => number;

/** mulberry32: a small, fast 32-bit generator; uniform in [0, 1). */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * tfjs draws the seeds of unseeded random ops (weight initialisers, dropout masks) from Math.random, and
 * a fixed Dropout `seed` would repeat the same mask every batch. Replacing Math.random for the lifetime of
 * this training process is what makes those ops reproducible.
 */
export function seedMathRandom(seed: number): void {
  Math.random = seededRandom(seed);
}

/** Fisher–Yates shuffle, in place. */
export function shuffle<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * Splits sample indices into train and test so each class keeps its share: round(testFraction × class
 * size) samples of every class go to test. Both lists come back shuffled.
 */
export function stratifiedSplit(
  labels: readonly number[],
  testFraction: number,
  random: Random,
): { train: number[]; test: number[] } {
  const byClass = new Map<number, number[]>();
  labels.forEach((label, index) => {
    const indices = byClass.get(label);
    if (indices) indices.push(index);
    else byClass.set(label, [index]);
  });
  const train: number[] = [];
  const test: number[] = [];
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const indices = shuffle(byClass.get(label)!, random);
    const testCount = Math.round(indices.length * testFraction);
    test.push(...indices.slice(0, testCount));
    train.push(...indices.slice(testCount));
  }
  return { train: shuffle(train, random), test: shuffle(test, random) };
}
