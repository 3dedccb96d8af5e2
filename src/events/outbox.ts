// The transactional outbox. A change that others must hear of (a contract approved, a prediction finished) writes
// its events in its own transaction, each with the pg-boss job that dispatches it: the event exists if and only
// if the change committed, and its job runs (retried until it succeeds) even if this process dies right after.
// Dispatching hands each event to the subscribers (webhook fan-out) and marks it dispatched; a subscriber must
// be idempotent per event, since a dispatch that failed half-way runs again.
import type pg from 'pg';
import type { JobKind, JobQueue, Transaction } from '../jobs/job-queue.js';

/** Every event, in one vocabulary (the webhook `type`). */
export const EventType = {
  PREDICTION_COMPLETED: 'prediction.completed',
  PREDICTION_FAILED: 'prediction.failed',
  BATCH_COMPLETED: 'batch.completed',
  CONTRACT_REQUESTED: 'contract.requested',
  CONTRACT_APPROVED: 'contract.approved',
  CONTRACT_REJECTED: 'contract.rejected',
  CONTRACT_SUSPENDED: 'contract.suspended',
  CONTRACT_REVOKED: 'contract.revoked',
  CONTRACT_EXPIRING: 'contract.expiring',
  QUOTA_THRESHOLD: 'quota.threshold',
  VERSION_PUBLISHED: 'version.published',
  ALIAS_MOVED: 'alias.moved',
  UPGRADE_AVAILABLE: 'upgrade.available',
  WEBHOOK_ENDPOINT_DISABLED: 'webhook_endpoint.disabled',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export const EVENT_TYPES: readonly EventType[] = Object.values(EventType);

export interface EventInput {
  type: EventType;
  /** The account told (its webhook endpoints receive it). */
  accountId: string;
  /** The event's payload (`data` of the webhook body): ids and facts, never secrets nor model inputs. */
  data: Record<string, unknown>;
}

export interface StoredEvent extends EventInput {
  id: string;
  createdAt: Date;
}

/** Handles a dispatched event; runs again for the same event after a failed dispatch. */
export type EventSubscriber = (event: StoredEvent) => Promise<void>;

export const EVENT_DISPATCH_JOB: JobKind = {
  name: 'event-dispatch',
  retryLimit: 12,
  retryDelaySeconds: 2,
  retryBackoff: true,
  expireInSeconds: 60,
};

/** Advisory lock class that lets one replica at a time give dispatch jobs again (see redispatchStranded). */
const REDISPATCH_LOCK_CLASS = 7275141;

export class EventOutbox {
  readonly #subscribers: EventSubscriber[] = [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly queue: JobQueue,
  ) {}

  /** Declares the dispatch queue and works it on this replica. */
  async start(concurrency = 2): Promise<void> {
    await this.queue.define(EVENT_DISPATCH_JOB);
    await this.queue.work<{ eventId: string }>(EVENT_DISPATCH_JOB.name, concurrency, ({ eventId }) =>
      this.#dispatch(eventId),
    );
  }

  subscribe(subscriber: EventSubscriber): void {
    this.#subscribers.push(subscriber);
  }

  /**
   * Writes events, and the jobs that dispatch them, in the caller's transaction: one statement however many events
   * (a fan-out to every consumer of a model is one change), through mm_emit_event, the same SQL as the events that
   * triggers emit. Resolves with their ids, in order.
   */
  async emit(tx: Transaction, events: EventInput[]): Promise<string[]> {
    return events.length === 0 ? [] : emitEvents(tx, events);
  }

  /** After the emitting transaction committed: this replica dispatches now rather than at its next poll. */
  wake(): void {
    this.queue.wake(EVENT_DISPATCH_JOB.name);
  }

  /**
   * Gives a dispatch job again to undispatched events whose job gave up (its retries spent while the database or a
   * subscriber was down), so that no event is left unsent. An event is written with its job, so one with a live
   * job is never taken; one replica at a time, so two passes never add the same job. Resolves with the count.
   */
  async redispatchStranded(limit: number): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows: locks } = await client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1, 0) AS locked',
        [REDISPATCH_LOCK_CLASS],
      );
      const { rows } = locks[0]!.locked
        ? await client.query<{ id: string }>(
            `SELECT e.id FROM events e
             WHERE e.dispatched_at IS NULL AND NOT EXISTS (
               SELECT 1 FROM pgboss.job j -- the JobQueue's table (src/jobs/job-queue.ts)
               WHERE j.name = $1 AND j.state < 'completed' AND j.data->>'eventId' = e.id::text)
             ORDER BY e.created_at LIMIT $2`,
            [EVENT_DISPATCH_JOB.name, limit],
          )
        : { rows: [] };
      for (const row of rows) await this.queue.send(EVENT_DISPATCH_JOB.name, { eventId: row.id }, { client });
      await client.query('COMMIT');
      if (rows.length > 0) this.wake();
      return rows.length;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async #dispatch(eventId: string): Promise<void> {
    const { rows } = await this.pool.query<{
      id: string;
      type: EventType;
      account_id: string;
      data: Record<string, unknown>;
      created_at: Date;
      dispatched_at: Date | null;
    }>('SELECT id, type, account_id, data, created_at, dispatched_at FROM events WHERE id = $1', [eventId]);
    const row = rows[0];
    // Gone with its account, or already dispatched by an earlier attempt that failed after marking it.
    if (!row || row.dispatched_at) return;
    const event: StoredEvent = {
      id: row.id,
      type: row.type,
      accountId: row.account_id,
      data: row.data,
      createdAt: row.created_at,
    };
    for (const subscriber of this.#subscribers) await subscriber(event);
    await this.pool.query('UPDATE events SET dispatched_at = now() WHERE id = $1', [eventId]);
  }
}

async function emitEvents(tx: Transaction, events: EventInput[]): Promise<string[]> {
  const sql = `SELECT mm_emit_event(e->>'type', (e->>'accountId')::uuid, e->'data') AS id
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(e, n) ORDER BY n`;
  const json = JSON.stringify(events.map(({ type, accountId, data }) => ({ type, accountId, data })));
  const rows =
    '$queryRawUnsafe' in tx
      ? await tx.$queryRawUnsafe<{ id: string }[]>(sql, json)
      : (await tx.query<{ id: string }>(sql, [json])).rows;
  return rows.map((row) => row.id);
}
