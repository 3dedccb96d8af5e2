// Input rules shared by the identity services. Each failure is BAD_USER_INPUT naming the argument.
import { BadUserInputError } from '../server/errors.js';

// Deliberately permissive (RFC 5321 lengths, one @, a dot in the domain): deliverability is not ours to judge.
const EMAIL = /^[^\s@]{1,64}@[^\s@.]+(\.[^\s@.]+)+$/u;

export function normaliseEmail(raw: string, field: string): string {
  const email = raw.normalize('NFKC').trim().toLowerCase();
  if (email.length > 254 || !EMAIL.test(email)) throw new BadUserInputError('Enter a valid e-mail address', field);
  return email;
}

/** Trims and checks a human-readable name (1..max characters, no control characters). */
export function cleanName(raw: string, field: string, max = 100): string {
  const name = raw.normalize('NFKC').trim();
  if (name.length === 0 || name.length > max) {
    throw new BadUserInputError(`${field} must be 1 to ${max} characters`, field);
  }
  if (/\p{Cc}/u.test(name)) throw new BadUserInputError(`${field} must not contain control characters`, field);
  return name;
}
