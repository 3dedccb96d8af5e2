// Fitting a mark to a small or fragile model: fewer bits, spread over several tensors. A mark of n bits
// changes the weights by about margin·sqrt(n) standard deviations in all, so halving n cuts the change by
// √2; the decision rule stays exact because the threshold is the binomial one for n bits. Verification
// splits the 10⁻¹² false-positive rate over every key it tries (Bonferroni), so the smallest useful n is
// the first whose threshold stays reachable with KEY_BUDGET keys: 2⁻ⁿ ≤ 10⁻¹²/1024 needs n ≥ 50, and
// then all 50 bits must match.
import { WatermarkError } from './errors.js';
import { MARK_BITS } from './keys.js';
import { binomialTail, DEFAULT_FALSE_POSITIVE_RATE, matchThreshold } from './statistics.js';

/**
 * Most keys one verification tries (watermark-service.ts refuses a search over more). An owner's search
 * covers the versions of their models with the suspect's architecture and every licensee copy of them:
 * 1,024 is a version with a thousand licensees, or many versions with fewer. Each doubling of it costs a
 * fitted mark one bit (about 1% more weight change at 50 bits), so a generous budget is cheap.
 */
export const KEY_BUDGET = 1024;

/** Fewest bits whose exact binomial threshold reaches `falsePositiveRate` for each of `keys` keys. */
export function minimumCapacity(falsePositiveRate = DEFAULT_FALSE_POSITIVE_RATE, keys = KEY_BUDGET): number {
  const perKey = falsePositiveRate / keys;
  for (let bits = 1; bits <= MARK_BITS; bits++) if (matchThreshold(bits, perKey) <= bits) return bits;
  throw new WatermarkError(`no mark of up to ${MARK_BITS} bits reaches a false-positive rate of ${perKey}`);
}

/** 50 at the default rate of 10⁻¹² and KEY_BUDGET keys (40 would do for a single key). */
export const MIN_CAPACITY = minimumCapacity();

/**
 * The decision rule for an n-bit mark when verification tries up to `keys` keys (decide() with keysTried ≤
 * keys): the fewest matched bits for MATCH, and the exact chance of that many by accident for one key.
 */
export function capacityThreshold(
  bits: number,
  falsePositiveRate = DEFAULT_FALSE_POSITIVE_RATE,
  keys = KEY_BUDGET,
): { threshold: number; falsePositiveRate: number } {
  const threshold = matchThreshold(bits, falsePositiveRate / keys);
  return { threshold, falsePositiveRate: binomialTail(threshold, bits) };
}

/**
 * Slack of each carrier tensor from its sensitivity: the mean squared output change that a mark of the same
 * capacity on that tensor alone caused. The least sensitive tensor gets 1, the others less in proportion.
 */
export function slackFromSensitivity(sensitivities: readonly number[]): number[] {
  const floor = Math.max(...sensitivities) * 1e-6 || 1; // a tensor that changed nothing is not infinitely free
  const clamped = sensitivities.map((s) => Math.max(s, floor));
  const least = Math.min(...clamped);
  return clamped.map((s) => least / s);
}

/** Output cost a carrier set may add over the best tensor alone, so that the mark spreads over more weights. */
export const SPREAD_TOLERANCE = 0.1;

/**
 * Which tensors carry a fitted mark, as indices into `sizes` and `slack`, in their original order. A mark
 * of margin m and n bits on carriers C, each weighted by its slack s_t, moves the outputs by about
 * n·m² / Σ_C (size_t / size_C)·s_t (quadratic model): a carrier with less slack than the others dilutes
 * the mark, since its share of every carrier row must be paid for too. So the set starts from the tensor
 * with most slack and takes the next ones only while that cost stays within SPREAD_TOLERANCE of it, or
 * while the set has fewer than `minWeights` weights.
 */
export function chooseCarriers(sizes: readonly number[], slack: readonly number[], minWeights: number): number[] {
  const order = sizes.map((_, i) => i).sort((a, b) => slack[b]! - slack[a]! || sizes[b]! - sizes[a]!);
  const meanSlack = (set: readonly number[]) =>
    set.reduce((sum, i) => sum + sizes[i]! * slack[i]!, 0) / set.reduce((sum, i) => sum + sizes[i]!, 0);
  const chosen = [order[0]!];
  const best = meanSlack(chosen);
  for (const next of order.slice(1)) {
    const weights = chosen.reduce((sum, i) => sum + sizes[i]!, 0);
    if (weights >= minWeights && meanSlack([...chosen, next]) < (1 - SPREAD_TOLERANCE) * best) break;
    chosen.push(next);
  }
  return chosen.sort((a, b) => a - b);
}

export interface CapacityTrial<T> {
  bits: number;
  fits: boolean;
  result: T;
}

/**
 * The largest capacity in [min, max] whose trial fits, by bisection (a mark of fewer bits changes the model
 * less): `max` first, then `min`, then about log2(max − min) more trials. `best` is null when even `min`
 * does not fit; `tried` lists every trial in order.
 */
export async function fitCapacity<T>(
  trial: (bits: number) => Promise<CapacityTrial<T>>,
  min = MIN_CAPACITY,
  max = MARK_BITS,
): Promise<{ best: CapacityTrial<T> | null; tried: CapacityTrial<T>[] }> {
  const tried: CapacityTrial<T>[] = [];
  const run = async (bits: number) => {
    const result = await trial(bits);
    tried.push(result);
    return result;
  };
  const top = await run(max);
  if (top.fits) return { best: top, tried };
  let best = await run(min);
  if (!best.fits) return { best: null, tried };
  let failing = max;
  while (failing - best.bits > 1) {
    const middle = await run(Math.floor((best.bits + failing) / 2));
    if (middle.fits) best = middle;
    else failing = middle.bits;
  }
  return { best, tried };
}
