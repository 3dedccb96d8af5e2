// Keyset pagination over rows listed newest first (created_at DESC, id DESC): a cursor is the last row's
// creation time and id, opaque to clients.
import { BadUserInputError } from './errors.js';
import { isUuid } from './ids.js';

export interface Cursor {
  createdAt: Date;
  id: string;
}

export const encodeCursor = (row: Cursor): string =>
  Buffer.from(JSON.stringify({ createdAt: row.createdAt.toISOString(), id: row.id })).toString('base64url');

/** The cursor a client sent as `after`; BAD_USER_INPUT when it is not one this server made. */
export function decodeCursor(cursor: string): Cursor {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { createdAt: unknown; id: unknown };
    if (
      typeof value.createdAt === 'string' &&
      typeof value.id === 'string' &&
      isUuid(value.id) &&
      !Number.isNaN(Date.parse(value.createdAt))
    )
      return { createdAt: new Date(value.createdAt), id: value.id };
  } catch {
    // fall through
  }
  throw new BadUserInputError('Invalid cursor', 'after');
}

/** A connection of the first `first` of `rows` (fetched with one more, to tell whether a next page exists). */
export function connectionOf<T extends Cursor>(rows: T[], first: number) {
  const page = rows.slice(0, first);
  return {
    edges: page.map((node) => ({ cursor: encodeCursor(node), node })),
    pageInfo: { hasNextPage: rows.length > first, endCursor: page.length ? encodeCursor(page.at(-1)!) : null },
  };
}
