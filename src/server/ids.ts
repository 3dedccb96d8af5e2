import { BadUserInputError } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Ids are UUIDs; anything else is BAD_USER_INPUT naming the argument (never a database error). */
export function assertUuid(value: string, field: string): void {
  if (!isUuid(value)) throw new BadUserInputError(`${field} must be a valid id`, field);
}
