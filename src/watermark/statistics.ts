// The decision rule: a one-sided binomial test per key. Under "this model does not carry the mark" every
// decoded bit matches its target with probability 1/2, independently (the target bits come from the key,
// which nothing else in the model depends on), so the matched count is Binomial(MARK_BITS, 1/2). All
// tail probabilities are computed exactly, in log space (the smallest, 2^-256, is far below 1e-12).
import { WatermarkError } from './errors.js';
import type { MarkPurpose } from './keys.js';

/** Chance that one key matches a model that does not carry its mark, over all keys tried together. */
export const DEFAULT_FALSE_POSITIVE_RATE = 1e-12;

/** What decoding one key found in a suspect model. */
export interface MarkEvidence {
  purpose: MarkPurpose;
  id: string;
  matchedBits: number;
  totalBits: number;
  /** P(at least matchedBits of totalBits match by chance). */
  pValue: number;
}

export type VerdictKind = 'MATCH' | 'NO_MATCH';

/** The decision about one key, added to its evidence. */
export interface VerdictFields {
  verdict: VerdictKind;
  /** Fewest matched bits that give MATCH at this key's share of the false-positive rate. */
  threshold: number;
  /** falsePositiveRate / keysTried (Bonferroni). */
  perKeyFalsePositiveRate: number;
}

export type Verdict<Evidence extends MarkEvidence = MarkEvidence> = Evidence & VerdictFields;

const logFactorials: number[] = [0];

function logFactorial(n: number): number {
  for (let i = logFactorials.length; i <= n; i++) logFactorials.push(logFactorials[i - 1]! + Math.log(i));
  return logFactorials[n]!;
}

/** ln P(X ≥ successes) for X ~ Binomial(trials, 1/2), exact up to floating-point rounding. */
export function binomialTailLog(successes: number, trials: number): number {
  if (!Number.isInteger(trials) || trials < 0 || !Number.isInteger(successes)) {
    throw new WatermarkError('binomial tail: trials and successes must be integers, trials ≥ 0');
  }
  if (successes <= 0) return 0;
  if (successes > trials) return -Infinity;
  const logTerms: number[] = [];
  for (let k = successes; k <= trials; k++) {
    logTerms.push(logFactorial(trials) - logFactorial(k) - logFactorial(trials - k) - trials * Math.LN2);
  }
  const largest = Math.max(...logTerms); // log-sum-exp
  return largest + Math.log(logTerms.reduce((sum, term) => sum + Math.exp(term - largest), 0));
}

/** P(X ≥ successes) for X ~ Binomial(trials, 1/2). */
export function binomialTail(successes: number, trials: number): number {
  return Math.exp(binomialTailLog(successes, trials));
}

/**
 * The fewest matched bits whose chance tail is at most `falsePositiveRate`; trials + 1 when even all bits
 * matching is not rare enough.
 */
export function matchThreshold(trials: number, falsePositiveRate: number): number {
  if (!(falsePositiveRate > 0 && falsePositiveRate < 1))
    throw new WatermarkError('the false-positive rate must be in (0, 1)');
  const logRate = Math.log(falsePositiveRate);
  let threshold = trials + 1;
  while (threshold > 0 && binomialTailLog(threshold - 1, trials) <= logRate) threshold--;
  return threshold;
}

/**
 * One verdict per decoded key. `keysTried` counts every key tested against this suspect, including any
 * whose results are not passed here: the false-positive rate is split evenly between them (Bonferroni),
 * so the chance that any wrong key matches stays at most `falsePositiveRate`.
 */
export function decide<Evidence extends MarkEvidence>(
  results: readonly Evidence[],
  keysTried: number,
  falsePositiveRate = DEFAULT_FALSE_POSITIVE_RATE,
): Verdict<Evidence>[] {
  if (!Number.isInteger(keysTried) || keysTried < Math.max(1, results.length)) {
    throw new WatermarkError(`keysTried must be an integer ≥ the ${results.length} results given, and ≥ 1`);
  }
  const perKeyFalsePositiveRate = falsePositiveRate / keysTried;
  return results.map((result) => {
    const threshold = matchThreshold(result.totalBits, perKeyFalsePositiveRate);
    const verdict: VerdictKind = result.matchedBits >= threshold ? 'MATCH' : 'NO_MATCH';
    return {
      ...result,
      verdict,
      threshold,
      perKeyFalsePositiveRate,
    };
  });
}
