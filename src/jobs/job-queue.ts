// Background work on pg-boss (PostgreSQL's own queue: no new server, jobs survive restarts, and replicas share
// them through SELECT … FOR UPDATE SKIP LOCKED). pg-boss runs on the application's pool, and its schema comes with
// the migrations (20261212000000_job_queue), so a test database cloned from the template has it already.
//
// A job is a wake-up, never the only record of work: each domain keeps its own rows (a prediction, a delivery) and
// enqueues in the same transaction that writes them (`send` with `client`), so no row is without its job and no
// job without its row. A job whose process died stays `active` until its `expireInSeconds` passes; pg-boss's
// maintenance then fails it, and it is retried (with backoff) while retries are left.
import PgBoss from 'pg-boss';
import type pg from 'pg';
import type { Prisma } from '../generated/prisma/client.js';
import type { Logger } from '../server/logger.js';

export interface JobQueueOptions {
  /** How often an idle worker asks for work (pg-boss polls; `wake` skips the wait for work sent here). */
  pollingIntervalSeconds: number;
  /** How often expired jobs are failed (and so retried) and old ones deleted; one replica does it at a time. */
  maintenanceIntervalSeconds: number;
}

/** One kind of job: its queue's retry, timeout and retention rules. */
export interface JobKind {
  name: string;
  /** Retries after the first attempt. */
  retryLimit: number;
  /** Seconds before the first retry; doubled each retry when `retryBackoff`. */
  retryDelaySeconds: number;
  retryBackoff: boolean;
  /** An attempt running longer than this is failed (its process is presumed dead) and retried. */
  expireInSeconds: number;
  /** How long a job that never started stays queued before maintenance archives it. */
  retentionMinutes?: number;
}

/** A transaction in progress, on a node-pg client or Prisma's. */
export type Transaction = pg.ClientBase | Prisma.TransactionClient;

/** pg-boss's SQL runner over a transaction: node-pg as it is; Prisma's raw SQL takes no undefined nor objects. */
export function executorOf(tx: Transaction): PgBoss.Db {
  if (!('$queryRawUnsafe' in tx)) return { executeSql: (text, values) => tx.query(text, values) };
  return {
    executeSql: async (text, values) => ({
      rows: await tx.$queryRawUnsafe<unknown[]>(
        text,
        ...values.map((value: unknown) =>
          value === undefined
            ? null
            : value !== null && typeof value === 'object' && !(value instanceof Date)
              ? JSON.stringify(value)
              : value,
        ),
      ),
    }),
  };
}

export interface SendOptions {
  /** Enqueue inside this transaction: the job exists if and only if the transaction commits. */
  client?: Transaction;
  /** Not before this time. */
  startAfter?: Date;
  /** At most one queued job with this key (per kind). */
  singletonKey?: string;
}

export interface JobHandlerContext {
  id: string;
  /** Attempts before this one. */
  retryCount: number;
}

export type JobHandler<T> = (data: T, job: JobHandlerContext) => Promise<void>;

/** A job as admins see it (jobs(filter)). */
export interface JobRow {
  id: string;
  name: string;
  state: 'created' | 'retry' | 'active' | 'completed' | 'cancelled' | 'failed';
  data: unknown;
  retryCount: number;
  retryLimit: number;
  createdOn: Date;
  /** created_on exactly (microseconds since 1970, as a decimal string): a Date keeps milliseconds only. */
  createdOnMicros: string;
  startedOn: Date | null;
  completedOn: Date | null;
  startAfter: Date;
  /** What the last failed attempt threw (its message), or the job's result when completed. */
  output: unknown;
}

export interface JobFilter {
  name?: string | null;
  state?: JobRow['state'] | null;
  /** Only jobs listed after this one (keyset pagination by created_on, id; see JobRow.createdOnMicros). */
  before?: { createdOnMicros: string; id: string } | null;
  limit: number;
}

const SCHEMA = 'pgboss';

export class JobQueue {
  readonly #boss: PgBoss;
  readonly #workers = new Map<string, string[]>();
  #stopped = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    options: JobQueueOptions,
  ) {
    this.#boss = new PgBoss({
      db: { executeSql: (text, values) => pool.query(text, values) },
      schema: SCHEMA,
      // The migrations created the schema; pg-boss still upgrades it itself after a pg-boss upgrade.
      migrate: true,
      supervise: true,
      schedule: false,
      maintenanceIntervalSeconds: options.maintenanceIntervalSeconds,
      pollingIntervalSeconds: options.pollingIntervalSeconds,
    });
    this.#boss.on('error', (error) => this.logger.error({ err: error }, 'job queue error'));
  }

  static async start(pool: pg.Pool, logger: Logger, options: JobQueueOptions): Promise<JobQueue> {
    const queue = new JobQueue(pool, logger, options);
    await queue.#boss.start();
    return queue;
  }

  /** Creates (or updates) a kind's queue; idempotent, so every replica declares what it sends and works. */
  async define(kind: JobKind): Promise<void> {
    const options: PgBoss.Queue = {
      name: kind.name,
      policy: 'standard',
      retryLimit: kind.retryLimit,
      retryDelay: kind.retryDelaySeconds,
      retryBackoff: kind.retryBackoff,
      expireInSeconds: kind.expireInSeconds,
      retentionMinutes: kind.retentionMinutes ?? 7 * 24 * 60,
    };
    await this.#boss.createQueue(kind.name, options);
    await this.#boss.updateQueue(kind.name, options);
  }

  /** Enqueues a job of a defined kind; resolves with its id (null when `singletonKey` found one queued). */
  async send(kind: string, data: object, options: SendOptions = {}): Promise<string | null> {
    const client = options.client;
    return this.#boss.send(kind, data, {
      ...(client ? { db: executorOf(client) } : {}),
      ...(options.startAfter ? { startAfter: options.startAfter } : {}),
      ...(options.singletonKey ? { singletonKey: options.singletonKey } : {}),
    });
  }

  /** Enqueues jobs of a defined kind in one statement, each with its data and, optionally, its start time. */
  async sendMany(
    kind: string,
    jobs: { data: object; startAfter?: Date }[],
    options: Pick<SendOptions, 'client'> = {},
  ): Promise<void> {
    if (jobs.length === 0) return;
    const client = options.client;
    await this.#boss.insert(
      jobs.map((job) => ({ name: kind, data: job.data, ...(job.startAfter ? { startAfter: job.startAfter } : {}) })),
      client ? { db: executorOf(client) } : {},
    );
  }

  /**
   * Runs `handler` for jobs of `kind`, up to `concurrency` at once on this replica. A handler that throws fails
   * the attempt (retried by the kind's rules) with its error's message as the job's output.
   */
  async work<T>(kind: string, concurrency: number, handler: JobHandler<T>): Promise<void> {
    // pg-boss 10 runs one job at a time per worker: `concurrency` workers, each fetching one job.
    const ids: string[] = [];
    for (let i = 0; i < concurrency; i++) {
      ids.push(
        await this.#boss.work<T>(kind, { batchSize: 1, includeMetadata: true }, async ([job]) => {
          if (job) await handler(job.data, { id: job.id, retryCount: job.retryCount });
        }),
      );
    }
    this.#workers.set(kind, [...(this.#workers.get(kind) ?? []), ...ids]);
  }

  /** Makes this replica's worker for `kind` look for work now rather than at its next poll. */
  wake(kind: string): void {
    if (this.#stopped) return;
    for (const id of this.#workers.get(kind) ?? []) this.#boss.notifyWorker(id);
  }

  /** Cancels a queued or running job (a running handler is not interrupted: it should check its own row). */
  async cancel(kind: string, id: string): Promise<void> {
    await this.#boss.cancel(kind, id);
  }

  /** Fails a job now (retried if it has retries left), e.g. one held by a process known to be dead. */
  async fail(kind: string, id: string, reason: string): Promise<void> {
    await this.#boss.fail(kind, id, { message: reason });
  }

  /**
   * Jobs, newest first, from pgboss.job: queued and running ones, and finished ones for 12 hours, after which
   * pg-boss's maintenance moves them to pgboss.archive (its archiveCompletedAfterSeconds default).
   */
  async list(filter: JobFilter): Promise<JobRow[]> {
    const { rows } = await this.pool.query<{
      id: string;
      name: string;
      state: JobRow['state'];
      data: unknown;
      retry_count: number;
      retry_limit: number;
      created_on: Date;
      created_on_micros: string;
      started_on: Date | null;
      completed_on: Date | null;
      start_after: Date;
      output: unknown;
    }>(
      `SELECT id, name, state, data, retry_count, retry_limit, created_on,
              (extract(epoch FROM created_on) * 1000000)::bigint::text AS created_on_micros, started_on, completed_on,
              start_after, output
       FROM ${SCHEMA}.job
       WHERE ($1::text IS NULL OR name = $1) AND ($2::${SCHEMA}.job_state IS NULL OR state = $2)
         AND ($3::bigint IS NULL OR (created_on, id) < ('epoch'::timestamptz + $3::bigint * interval '1 microsecond', $4::uuid))
       ORDER BY created_on DESC, id DESC
       LIMIT $5`,
      [
        filter.name ?? null,
        filter.state ?? null,
        filter.before?.createdOnMicros ?? null,
        filter.before?.id ?? null,
        filter.limit,
      ],
    );
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      state: row.state,
      data: row.data,
      retryCount: row.retry_count,
      retryLimit: row.retry_limit,
      createdOn: row.created_on,
      createdOnMicros: row.created_on_micros,
      startedOn: row.started_on,
      completedOn: row.completed_on,
      startAfter: row.start_after,
      output: row.output,
    }));
  }

  /**
   * Stops polling and waits (up to `timeoutMs`, at least 1 s: pg-boss's floor) for this replica's running
   * handlers. pg-boss then fails the jobs of those still running (failWip), at once: each is retried — on any
   * replica, after its retry delay — while its handler here is not interrupted and may still finish, so a handler
   * must tolerate a duplicate run of its job.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#boss.stop({ graceful: true, wait: true, timeout: timeoutMs, close: false });
  }
}
