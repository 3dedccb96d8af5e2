// Input rules shared by the identity services. Each failure is BAD_USER_INPUT naming the argument.
import { BadUserInputError } from '../server/errors.js';

// Deliberately permissive (RFC 5321 lengths, one @, a dot in the domain): deliverability is not ours to judge.
// No control characters: PostgreSQL refuses NUL, and nothing else of them belongs in an address.
const EMAIL = /^[^\s@\p{Cc}]{1,64}@[^\s@.\p{Cc}]+(\.[^\s@.\p{Cc}]+)+$/u;

export function normaliseEmail(raw: string, field: string): string {
  const email = raw.normalize('NFKC').trim().toLowerCase();
  if (email.length > 254 || !EMAIL.test(email)) throw new BadUserInputError('Enter a valid e-mail address', field);
  return email;
}
