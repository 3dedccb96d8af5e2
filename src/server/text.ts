import { BadUserInputError } from './errors.js';

/**
 * Normalises (NFKC) and trims free text from a client, and checks its length; `singleLine` also refuses
 * control characters (names, labels). Each failure is BAD_USER_INPUT naming the argument.
 */
export function cleanText(
  raw: string,
  field: string,
  options: { max: number; min?: 0 | 1; singleLine?: boolean },
): string {
  const { max, min = 1, singleLine = false } = options;
  const text = raw.normalize('NFKC').trim();
  if (text.length < min || text.length > max) {
    throw new BadUserInputError(`${field} must be ${min} to ${max} characters`, field);
  }
  if (singleLine && /\p{Cc}/u.test(text)) {
    throw new BadUserInputError(`${field} must not contain control characters`, field);
  }
  return text;
}
