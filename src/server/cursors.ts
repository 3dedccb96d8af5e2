// Keyset pagination cursors: the sort position of the last row a page showed (its time, as text, and its id),
// opaque to clients. The JSON shape ({createdAt, id}) is the one model listings have always issued.
import { BadUserInputError } from './errors.js';
import { isUuid } from './ids.js';

export interface KeysetPosition {
  /** The row's sort time, in whatever exact text form the listing compares (ISO 8601, epoch microseconds…). */
  createdAt: string;
  id: string;
}

export const encodeCursor = (position: KeysetPosition): string =>
  Buffer.from(JSON.stringify({ createdAt: position.createdAt, id: position.id })).toString('base64url');

/** The position in `cursor`; BAD_USER_INPUT on `after` for anything this listing did not issue. */
export function decodeCursor(cursor: string, isTime: (createdAt: string) => boolean): KeysetPosition {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as KeysetPosition;
    if (
      typeof value.createdAt === 'string' &&
      typeof value.id === 'string' &&
      isUuid(value.id) &&
      isTime(value.createdAt)
    )
      return value;
  } catch {
    // fall through
  }
  throw new BadUserInputError('Invalid cursor', 'after');
}

/** For listings ordered by a millisecond timestamp (Prisma's DateTime). */
export const isIsoTime = (createdAt: string): boolean => !Number.isNaN(Date.parse(createdAt));

/** A row of a listing ordered newest first by a millisecond time (Prisma's DateTime), then id. */
export interface TimedRow {
  createdAt: Date;
  id: string;
}

/** The position in a cursor of such a listing; BAD_USER_INPUT on `after` for anything it did not issue. */
export function decodeTimeCursor(cursor: string): TimedRow {
  const { createdAt, id } = decodeCursor(cursor, isIsoTime);
  return { createdAt: new Date(createdAt), id };
}

/** A connection of the first `first` of `rows` (fetched with one more, to tell whether a next page exists). */
export function connectionOf<T extends TimedRow>(rows: T[], first: number) {
  const page = rows.slice(0, first);
  const cursorOf = (row: T) => encodeCursor({ createdAt: row.createdAt.toISOString(), id: row.id });
  return {
    edges: page.map((node) => ({ cursor: cursorOf(node), node })),
    pageInfo: { hasNextPage: rows.length > first, endCursor: page.length ? cursorOf(page.at(-1)!) : null },
  };
}

/** BAD_USER_INPUT on `first` unless it is 1 to `max`: every connection bounds its page. */
export function assertPageSize(first: number, max = 100): void {
  if (!Number.isInteger(first) || first < 1 || first > max)
    throw new BadUserInputError(`first must be 1 to ${max}`, 'first');
}

/**
 * A page request of a listing ordered newest first by (createdAt, id), checked before anything is read or
 * recorded: the Prisma conditions that skip to the rows after `after` (none without a cursor).
 */
export function newestFirstPage(first: number, after: string | null | undefined) {
  assertPageSize(first);
  if (after == null) return [];
  const { createdAt, id } = decodeTimeCursor(after);
  return [{ OR: [{ createdAt: { lt: createdAt } }, { createdAt, id: { lt: id } }] }];
}
