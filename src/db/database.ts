// The one database entry point: a pg pool shared by Prisma (through its driver adapter) and the few
// components that need raw SQL (rate limiting, health checks). Every wait on the database is bounded: a
// database that refuses, freezes or drops connections fails calls within the timeouts (see errors.ts), and
// the pool opens new connections once it is back.
import { randomBytes } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { DatabaseTimeoutError } from './errors.js';

export type Prisma = PrismaClient;

export interface DatabaseTimeouts {
  /** Opening a connection, and waiting for a free one in the pool. */
  connectMs: number;
  /** PostgreSQL's statement_timeout; the client gives up on an answer a little later (a frozen server). */
  statementMs: number;
  /** PostgreSQL's idle_in_transaction_session_timeout: a transaction its client left open ends. */
  idleInTransactionMs: number;
}

export interface Database {
  prisma: PrismaClient;
  pool: pg.Pool;
  /** `SELECT 1` within `timeoutMs` (connection included); rejects otherwise. */
  ping(timeoutMs: number): Promise<void>;
  /**
   * Cancels the statements this process's connections are running (a stop that gave up on its calls), on a
   * connection of its own opened and answered within `timeoutMs`; resolves with how many were cancelled.
   */
  cancelRunningStatements(timeoutMs: number): Promise<number>;
  /** Ends the pool; waits for checked-out connections and for the server to close each one. */
  close(): Promise<void>;
  /** Destroys every pool connection's socket at once: for a close that did not finish (a frozen server). */
  destroy(): void;
}

/** How long after statement_timeout the client stops waiting: the server's own cancel normally comes first. */
const READ_TIMEOUT_MARGIN_MS = 1000;

/**
 * A client that ends its connection when it gave up waiting for an answer: the unanswered query still occupies
 * it, so reused (Prisma's transactions release their client without the error) it would make every later
 * query wait for the same frozen answer.
 */
class TimeoutDroppingClient extends pg.Client {
  // pg's overloads cannot be re-declared generically; pool.query passes a callback, a checked-out client not.
  override query(...args: unknown[]): never {
    const last = args.at(-1);
    if (typeof last === 'function') {
      args[args.length - 1] = (err: unknown, result: unknown) => {
        this.#dropAfterReadTimeout(err);
        (last as (e: unknown, r: unknown) => void)(err, result);
      };
    }
    const pending = (super.query as (...a: unknown[]) => unknown)(...args);
    if (!(pending instanceof Promise)) return pending as never;
    return pending.catch((err: unknown) => {
      this.#dropAfterReadTimeout(err);
      throw err;
    }) as never;
  }

  #dropAfterReadTimeout(err: unknown): void {
    // end() marks the client as ending at once (the pool then discards it) and destroys a busy socket.
    if (err instanceof Error && err.message === 'Query read timeout') void this.end().catch(() => undefined);
  }
}

export function connectDatabase(url: string, poolSize: number, timeouts: DatabaseTimeouts): Database {
  // Names this process's connections, so that a stop cancels its own statements and no other process's. In the
  // URL, because pg lets the URL's parameters override the options.
  const applicationName = `modelmarket:${process.pid}:${randomBytes(4).toString('hex')}`;
  const named = new URL(url);
  named.searchParams.set('application_name', applicationName);
  const pool = new pg.Pool({
    connectionString: named.href,
    max: poolSize,
    connectionTimeoutMillis: timeouts.connectMs,
    statement_timeout: timeouts.statementMs,
    query_timeout: timeouts.statementMs + READ_TIMEOUT_MARGIN_MS,
    idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
    Client: TimeoutDroppingClient,
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  const connections = new Set<pg.Client>();
  pool.on('connect', (client) => connections.add(client));
  pool.on('remove', (client) => connections.delete(client));
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    async ping(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      // query_timeout bounds the answer; the race also bounds the wait for a connection.
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DatabaseTimeoutError('SELECT 1', timeoutMs)), timeoutMs);
      });
      try {
        // pg reads query_timeout from a query's config too; its types do not declare it.
        const query = { text: 'SELECT 1', query_timeout: timeoutMs } as pg.QueryConfig;
        await Promise.race([pool.query(query), timedOut]);
      } finally {
        clearTimeout(timer);
      }
    },
    async cancelRunningStatements(timeoutMs) {
      const client = new pg.Client({
        connectionString: url,
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const { rowCount } = await client.query(
          `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
            WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()`,
          [applicationName],
        );
        return rowCount ?? 0;
      } finally {
        // Not awaited: ending waits for the server to close its side, which a frozen server never does.
        void client.end().catch(() => undefined);
      }
    },
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
    destroy() {
      for (const client of connections) client.connection.stream.destroy();
    },
  };
}
