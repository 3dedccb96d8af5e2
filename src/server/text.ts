import { BadUserInputError } from './errors.js';

/**
 * What PostgreSQL refuses in text: NUL, and lone UTF-16 surrogates (they have no UTF-8 encoding). With the `u`
 * flag a well-formed surrogate pair is one code point, so only lone halves match `\p{Cs}`.
 */
const UNSTORABLE = /[\0\p{Cs}]/u;

/** True when PostgreSQL would refuse the string as text (or as a JSON string in jsonb). */
export function isUnstorableText(value: string): boolean {
  return UNSTORABLE.test(value);
}

/** The refusal of unstorable text in `field`, wherever it is found (an argument, or a request at the front door). */
export function unstorableTextError(field: string): BadUserInputError {
  return new BadUserInputError(`${field} must not contain NUL characters or lone UTF-16 surrogates`, field);
}

/** BAD_USER_INPUT naming the argument when the string cannot be stored as text. */
export function assertStorableText(value: string, field: string): void {
  if (isUnstorableText(value)) throw unstorableTextError(field);
}

const CONTROL = /\p{Cc}/u;

/**
 * Normalises (NFKC) and trims free text from a client, and checks its length and that PostgreSQL can store it;
 * `singleLine` also refuses control characters (names, labels). Each failure is BAD_USER_INPUT naming the
 * argument.
 */
export function cleanText(
  raw: string,
  field: string,
  options: { max: number; min?: 0 | 1; singleLine?: boolean },
): string {
  const { max, min = 1, singleLine = false } = options;
  assertStorableText(raw, field);
  const text = raw.normalize('NFKC').trim();
  if (text.length < min || text.length > max) {
    throw new BadUserInputError(`${field} must be ${min} to ${max} characters`, field);
  }
  if (singleLine && CONTROL.test(text)) {
    throw new BadUserInputError(`${field} must not contain control characters`, field);
  }
  return text;
}

const MAX_REQUEST_ID = 255;

/**
 * A client's idempotency key (`requestId`): 1 to 255 characters, no control characters, storable. It is
 * stored and exported as given, so it is not normalised.
 */
export function checkRequestId(requestId: string, field: string): string {
  if (requestId.length === 0 || requestId.length > MAX_REQUEST_ID) {
    throw new BadUserInputError(`${field} must be 1 to ${MAX_REQUEST_ID} characters`, field);
  }
  assertStorableText(requestId, field);
  if (CONTROL.test(requestId)) throw new BadUserInputError(`${field} must not contain control characters`, field);
  return requestId;
}
