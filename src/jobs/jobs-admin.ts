// Admins' view of the background jobs (jobs(filter)): state, attempts and last error, from pgboss.job.
import type { JobFilter, JobState } from '../generated/graphql.js';
import { assertPageSize, decodeCursor, encodeCursor } from '../server/cursors.js';
import { BadUserInputError } from '../server/errors.js';
import { isUuid } from '../server/ids.js';
import type { JobQueue, JobRow } from './job-queue.js';

/** Microseconds since 1970 as a bigint holds them (18 digits reach the year 33658). */
const MICROS = /^\d{1,18}$/;
const MAX_NAME = 100;

export class JobsAdmin {
  constructor(private readonly queue: JobQueue) {}

  async list(filter: JobFilter | null | undefined, first: number, after: string | null | undefined) {
    assertPageSize(first);
    const name = filter?.name?.trim() || null;
    if (name !== null && name.length > MAX_NAME)
      throw new BadUserInputError(`filter.name must be at most ${MAX_NAME} characters`, 'filter.name');
    const position = after == null ? null : decodeCursor(after, (at) => MICROS.test(at));
    const rows = await this.queue.list({
      name,
      state: (filter?.state?.toLowerCase() as JobRow['state'] | undefined) ?? null,
      before: position && { createdOnMicros: position.createdAt, id: position.id },
      limit: first + 1,
    });
    const page = rows.slice(0, first);
    const cursor = (row: JobRow) => encodeCursor({ createdAt: row.createdOnMicros, id: row.id });
    return {
      edges: page.map((row) => ({ cursor: cursor(row), node: asJob(row) })),
      pageInfo: { hasNextPage: rows.length > first, endCursor: page.length ? cursor(page.at(-1)!) : null },
    };
  }
}

function asJob(row: JobRow) {
  return {
    id: row.id,
    name: row.name,
    state: row.state.toUpperCase() as JobState,
    // pg-boss counts a retry when the job is fetched again: an attempt that started is retryCount + 1.
    attempts: row.startedOn ? row.retryCount + 1 : 0,
    retryLimit: row.retryLimit,
    createdAt: row.createdOn,
    startedAt: row.startedOn,
    completedAt: row.completedOn,
    startAfter: row.startAfter,
    lastError: row.state === 'failed' || row.state === 'retry' ? errorMessage(row.output) : null,
    ids: idsOf(row.data),
  };
}

/** A handler's error is stored serialised ({message, stack…}); an expired attempt's as {value: {message}}. */
function errorMessage(output: unknown): string | null {
  if (output === null || typeof output !== 'object') return null;
  const { message, value } = output as { message?: unknown; value?: unknown };
  if (typeof message === 'string') return message;
  return value === undefined ? null : errorMessage(value);
}

/** Only the ids of a job's data: jobs carry ids by design, and anything else stays out of the admin view. */
function idsOf(data: unknown): Record<string, string> {
  if (data === null || typeof data !== 'object') return {};
  return Object.fromEntries(
    Object.entries(data).filter((entry): entry is [string, string] => typeof entry[1] === 'string' && isUuid(entry[1])),
  );
}
