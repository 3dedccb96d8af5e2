/** A unique constraint refused the write (Prisma's P2002). */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: string }).code === 'P2002';
}

/** The database did not answer in time (a check with its own deadline, such as the readiness probe's). */
export class DatabaseTimeoutError extends Error {
  constructor(what: string, timeoutMs: number) {
    super(`${what} got no answer from the database within ${timeoutMs} ms`);
  }
}

/** Socket failures: nothing listens, the connection broke, or the network does not reach the host. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);
/**
 * SQLSTATEs of a database that cannot serve now: admin/crash shutdown, starting up (57P01–57P03), too many
 * connections (53300), a cancelled statement (57014: statement_timeout, or a stop that cut its running calls).
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '57014']);
/** Prisma's codes for the same: unreachable, timed out, connection closed, too many connections, pool timeout. */
const UNAVAILABLE_PRISMA_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2037']);
/** @prisma/adapter-pg's kinds for the driver's connection failures (Prisma may report them as P2010). */
const UNAVAILABLE_ADAPTER_KINDS = new Set([
  'DatabaseNotReachable',
  'ConnectionClosed',
  'SocketTimeout',
  'TooManyConnections',
]);
/** pg's own errors for a connection it could not open, lost, or gave up waiting on. */
const PG_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^Query read timeout$/,
  /^Client has encountered a connection error and is not queryable$/,
];

/**
 * Whether `error` means the database is unavailable (refusing, unreachable, frozen, shutting down, overloaded)
 * rather than that the request itself failed: then the call may succeed when retried. Looks through the wrappers
 * (Prisma's driver-adapter errors, GraphQL's originalError, Error.cause).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>();
  const pending: unknown[] = [error];
  while (pending.length) {
    const current = pending.pop();
    if (typeof current !== 'object' || current === null || seen.has(current)) continue;
    seen.add(current);
    if (current instanceof DatabaseTimeoutError) return true;
    const { code, kind, message, cause, originalError, meta } = current as {
      code?: unknown;
      kind?: unknown;
      message?: unknown;
      cause?: unknown;
      originalError?: unknown;
      meta?: { driverAdapterError?: unknown };
    };
    if (typeof code === 'string') {
      if (SOCKET_CODES.has(code) || UNAVAILABLE_PRISMA_CODES.has(code)) return true;
      // Class 08: connection exceptions.
      if (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code)) return true;
    }
    if (typeof kind === 'string' && UNAVAILABLE_ADAPTER_KINDS.has(kind)) return true;
    if (typeof message === 'string' && PG_MESSAGES.some((pattern) => pattern.test(message))) return true;
    // AggregateError (a connection tried on several addresses) carries its failures in `errors`.
    const { errors } = current as { errors?: unknown };
    pending.push(cause, originalError, meta?.driverAdapterError, ...(Array.isArray(errors) ? errors : []));
  }
  return false;
}
