// Comparing a presented secret with the expected one without telling, by the time it takes, how much of it
// matched: both are hashed first, so the comparison is of equal lengths whatever was sent.
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Constant-time equality of two secrets of any length. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}
