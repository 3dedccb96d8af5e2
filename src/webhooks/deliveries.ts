// Fan-out and delivery. For each dispatched event, one transaction writes a delivery per ACTIVE endpoint of the
// account subscribed to its type (and one to a prediction's own `webhook` URL) with a job each; the unique
// (event, endpoint) key makes a re-dispatched event add nothing. A delivery job makes one attempt and, in one
// transaction, records it and either ends the delivery or enqueues the next attempt at its time on our schedule:
// a delivery row is never without the job that moves it on. A process that dies mid-attempt leaves its job
// `active` until the job's timeout, then it is retried: delivery is at-least-once, and receivers dedupe on the
// `webhook-id`, which stays the event's for every attempt and endpoint. A job that exhausts its own retries (the
// database down for hours) leaves its delivery PENDING without a job: the periodic sweep gives it one again (and
// asks the outbox to do the same for its events). The same timer deletes events past EVENTS_RETENTION_DAYS, with
// their deliveries and attempts.
import type pg from 'pg';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Config } from '../config.js';
import type { Prisma } from '../db/database.js';
import type { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import { EventType, type EventOutbox, type StoredEvent } from '../events/outbox.js';
import type { JobKind, JobQueue } from '../jobs/job-queue.js';
import type { SecretBox } from '../security/secret-box.js';
import type { Logger } from '../server/logger.js';
import { deliver, newSigningSecret, type AttemptOutcome } from './sender.js';
import { parseWebhookUrl } from './url.js';

export type WebhookOptions = Config['webhooks'];

export const WEBHOOK_DELIVERY_JOB: JobKind = {
  name: 'webhook-delivery',
  // Retries of the job itself are for an attempt that could not be recorded (database unavailable) or whose
  // process died; the delivery's own retries are new jobs on the webhook schedule.
  retryLimit: 10,
  retryDelaySeconds: 5,
  retryBackoff: true,
  // The attempt's 10 s, and its recording, with room to spare.
  expireInSeconds: 60,
};

/** Advisory lock class that lets one replica at a time sweep stranded deliveries. */
const SWEEP_LOCK_CLASS = 7275140;
/** How long the job of an account with WEBHOOK_MAX_IN_FLIGHT_PER_ACCOUNT attempts in flight waits to look again. */
const DEFER_SECONDS = 1;
/** How long a prediction's own URL that keeps failing is skipped before one delivery is tried on it again. */
const OWN_URL_RETRY_AFTER_SECONDS = 3600;
/** Rows a sweep or a retention pass handles per transaction (short locks; the next pass takes the rest). */
const MAINTENANCE_BATCH = 500;

/** A delivery job: attempt number `attempts + 1` of the delivery; a job for an attempt already made is stale. */
interface DeliveryJob {
  deliveryId: string;
  attempts: number;
}

/** The `webhook-id` of an event's deliveries: one per event, whichever endpoint, attempt or redelivery. */
export const messageIdOf = (eventId: string) => `msg_${eventId}`;

export const endpointSecretLabel = (endpointId: string) => `webhook-endpoint-secret:${endpointId}`;
export const defaultSecretLabel = (accountId: string) => `webhook-default-secret:${accountId}`;

/** The prediction's own URL an event asks to be delivered to, if any (see the outbox contract). */
function ownWebhookOf(event: StoredEvent): string | null {
  const { webhook, webhookEvents } = event.data;
  if (typeof webhook !== 'string') return null;
  if (Array.isArray(webhookEvents) && !webhookEvents.includes(event.type)) return null;
  return webhook;
}

interface DueDelivery {
  id: string;
  event_id: string;
  account_id: string;
  endpoint_id: string | null;
  url: string;
  status: 'PENDING' | 'SUCCEEDED' | 'FAILED';
  attempts: number;
  attempts_before_redelivery: number;
  type: string;
  data: Record<string, unknown>;
  created_at: Date;
  endpoint_status: 'ACTIVE' | 'DISABLED' | null;
  endpoint_url: string | null;
  endpoint_secret: string | null;
  default_secret: string | null;
}

export class WebhookDeliveries {
  #timer: NodeJS.Timeout | undefined;
  #maintaining: Promise<void> | undefined;
  /** Attempts in flight on this server, by account. */
  readonly #inFlight = new Map<string, number>();

  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly jobs: JobQueue,
    private readonly events: EventOutbox,
    private readonly audit: AuditService,
    private readonly secrets: SecretBox,
    private readonly options: WebhookOptions,
    private readonly logger: Logger,
  ) {}

  /** Declares and works the delivery queue, and subscribes the fan-out to the outbox (before it starts). */
  async start(): Promise<void> {
    await this.jobs.define(WEBHOOK_DELIVERY_JOB);
    await this.jobs.work<DeliveryJob>(WEBHOOK_DELIVERY_JOB.name, this.options.deliveryConcurrency, (job) =>
      this.#attempt(job),
    );
    this.events.subscribe((event) => this.#fanOut(event));
    this.#timer = setInterval(() => {
      // A pass still running (a large backlog) is not joined by another.
      this.#maintaining ??= this.maintain()
        .catch((error: unknown) => this.logger.error({ err: error }, 'webhook maintenance failed'))
        .finally(() => (this.#maintaining = undefined));
    }, this.options.sweepIntervalSeconds * 1000);
  }

  /** Stops the timer and waits for a pass in progress (before the database closes under it). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#maintaining;
  }

  /**
   * One pass: events and deliveries whose job gave up get one again, and expired events are deleted; safe on
   * every replica at once.
   */
  async maintain(): Promise<void> {
    const redispatched = await this.events.redispatchStranded(MAINTENANCE_BATCH);
    if (redispatched > 0)
      this.logger.warn({ events: redispatched }, 'events without a live dispatch job were enqueued again');
    await this.sweep();
    await this.deleteExpiredEvents();
  }

  /**
   * Gives a job again to PENDING deliveries whose attempt is due and that have no live job (theirs exhausted its
   * retries or was deleted). One replica at a time, so two sweeps never enqueue the same attempt; a delivery and
   * its job are always written together, so one with a job in flight is never taken. Resolves with the count.
   */
  async sweep(): Promise<number> {
    const swept = await this.prisma.$transaction(async (tx) => {
      const [lock] = await tx.$queryRaw<{ locked: boolean }[]>`
        SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK_CLASS}::int, 0) AS locked`;
      if (!lock?.locked) return 0;
      const stranded = await tx.$queryRaw<{ id: string; attempts: number }[]>`
        SELECT d.id, d.attempts FROM webhook_deliveries d
        WHERE d.status = 'PENDING' AND coalesce(d.next_attempt_at, d.created_at) <= now()
          AND NOT EXISTS (
            SELECT 1 FROM pgboss.job j -- the JobQueue's table (src/jobs/job-queue.ts)
            WHERE j.name = ${WEBHOOK_DELIVERY_JOB.name} AND j.state < 'completed'
              AND j.data->>'deliveryId' = d.id::text AND (j.data->>'attempts')::int = d.attempts)
        ORDER BY coalesce(d.next_attempt_at, d.created_at)
        LIMIT ${MAINTENANCE_BATCH}
        FOR UPDATE OF d SKIP LOCKED`;
      for (const delivery of stranded) await this.enqueue(tx, delivery.id, delivery.attempts);
      return stranded.length;
    });
    if (swept > 0) {
      this.logger.warn({ deliveries: swept }, 'webhook deliveries without a live job were enqueued again');
      this.wake();
    }
    return swept;
  }

  /**
   * Deletes dispatched events older than EVENTS_RETENTION_DAYS, their deliveries and attempts with them (cascade),
   * unless a delivery is still PENDING. The deliveries are locked first, so a redelivery committing meanwhile is
   * seen (its PENDING keeps the event). Resolves with the count deleted.
   */
  async deleteExpiredEvents(): Promise<number> {
    let deleted = 0;
    for (;;) {
      const count = await this.prisma.$executeRaw`
        WITH expired AS (
          SELECT id FROM events
          WHERE dispatched_at IS NOT NULL
            AND created_at < now() - make_interval(days => ${this.options.eventsRetentionDays}::int)
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id AND d.status = 'PENDING')
          ORDER BY created_at LIMIT ${MAINTENANCE_BATCH}
          FOR UPDATE SKIP LOCKED
        ), deliveries AS (
          SELECT event_id, status FROM webhook_deliveries WHERE event_id IN (SELECT id FROM expired) FOR UPDATE
        )
        DELETE FROM events WHERE id IN (SELECT id FROM expired)
          AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = events.id AND status = 'PENDING')`;
      deleted += count;
      if (count < MAINTENANCE_BATCH) return deleted;
    }
  }

  /** Enqueues the next attempt of a delivery in the caller's transaction (a redelivery). */
  async enqueue(tx: PrismaNamespace.TransactionClient, deliveryId: string, attempts: number, at?: Date): Promise<void> {
    const job: DeliveryJob = { deliveryId, attempts };
    await this.jobs.send(WEBHOOK_DELIVERY_JOB.name, job, { client: tx, ...(at ? { startAfter: at } : {}) });
  }

  /** After a transaction that enqueued attempts committed: this replica attempts now. */
  wake(): void {
    this.jobs.wake(WEBHOOK_DELIVERY_JOB.name);
  }

  async #fanOut(event: StoredEvent): Promise<void> {
    let ownUrl = ownWebhookOf(event);
    if (ownUrl !== null) {
      try {
        parseWebhookUrl(ownUrl, 'webhook');
      } catch {
        // Checked when the prediction was created; an event carrying anything else is a bug, not a delivery.
        this.logger.error({ eventId: event.id }, 'event carries an invalid webhook URL; not delivered to it');
        ownUrl = null;
      }
    }
    const created = await this.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<{ id: string }[]>`
        INSERT INTO webhook_deliveries (event_id, account_id, endpoint_id, url)
        SELECT ${event.id}::uuid, account_id, id, url FROM webhook_endpoints
        WHERE account_id = ${event.accountId}::uuid AND status = 'ACTIVE' AND ${event.type} = ANY(events)
        ON CONFLICT DO NOTHING RETURNING id`;
      if (ownUrl !== null) {
        // Deliveries to own URLs are signed with the account's default secret, made now if it has none yet.
        const secret = this.secrets.seal(newSigningSecret(), defaultSecretLabel(event.accountId));
        await tx.$executeRaw`
          INSERT INTO webhook_signing_secrets (account_id, secret_sealed) VALUES (${event.accountId}::uuid, ${secret})
          ON CONFLICT DO NOTHING`;
        rows.push(
          ...(await tx.$queryRaw<{ id: string }[]>`
            INSERT INTO webhook_deliveries (event_id, account_id, endpoint_id, url)
            VALUES (${event.id}::uuid, ${event.accountId}::uuid, NULL, ${ownUrl})
            ON CONFLICT DO NOTHING RETURNING id`),
        );
      }
      for (const row of rows) await this.enqueue(tx, row.id, 0);
      return rows.length;
    });
    if (created > 0) this.wake();
  }

  async #attempt(job: DeliveryJob): Promise<void> {
    const { rows } = await this.pool.query<DueDelivery>(
      `SELECT d.id, d.event_id, d.account_id, d.endpoint_id, d.url, d.status, d.attempts, d.attempts_before_redelivery,
              e.type, e.data, e.created_at, ep.status AS endpoint_status, ep.url AS endpoint_url,
              ep.secret_sealed AS endpoint_secret, s.secret_sealed AS default_secret
       FROM webhook_deliveries d
       JOIN events e ON e.id = d.event_id
       LEFT JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
       LEFT JOIN webhook_signing_secrets s ON s.account_id = d.account_id AND d.endpoint_id IS NULL
       WHERE d.id = $1`,
      [job.deliveryId],
    );
    const delivery = rows[0];
    // Gone (endpoint or account deleted), ended, or this attempt was already made and recorded.
    if (!delivery || delivery.status !== 'PENDING' || delivery.attempts !== job.attempts) return;
    const unattempted =
      delivery.endpoint_id !== null
        ? delivery.endpoint_status === 'ACTIVE'
          ? null
          : 'the endpoint is disabled'
        : await this.#ownUrlFailing(delivery);
    if (unattempted !== null) {
      await this.pool.query(
        `UPDATE webhook_deliveries SET status = 'FAILED', last_error = $3, next_attempt_at = NULL, updated_at = now()
         WHERE id = $1 AND attempts = $2 AND status = 'PENDING'`,
        [delivery.id, delivery.attempts, unattempted],
      );
      return;
    }
    const inFlight = this.#inFlight.get(delivery.account_id) ?? 0;
    if (inFlight >= this.options.maxInFlightPerAccount) {
      // The account's receivers hold enough workers: the same attempt, later, leaving the others to other accounts.
      await this.jobs.send(WEBHOOK_DELIVERY_JOB.name, job, { startAfter: new Date(Date.now() + DEFER_SECONDS * 1000) });
      return;
    }
    this.#inFlight.set(delivery.account_id, inFlight + 1);
    try {
      await this.#attemptNow(delivery);
    } finally {
      const left = this.#inFlight.get(delivery.account_id)! - 1;
      if (left === 0) this.#inFlight.delete(delivery.account_id);
      else this.#inFlight.set(delivery.account_id, left);
    }
  }

  async #attemptNow(delivery: DueDelivery): Promise<void> {
    const url = delivery.endpoint_url ?? delivery.url;
    const secret =
      delivery.endpoint_id !== null
        ? this.secrets.open(delivery.endpoint_secret!, endpointSecretLabel(delivery.endpoint_id))
        : this.secrets.open(delivery.default_secret!, defaultSecretLabel(delivery.account_id));
    const body = JSON.stringify({
      type: delivery.type,
      timestamp: delivery.created_at.toISOString(),
      data: delivery.data,
    });
    const outcome = await deliver({
      url,
      messageId: messageIdOf(delivery.event_id),
      secret,
      body,
      allowPrivateNetworks: this.options.allowPrivateNetworks,
    });
    await this.#record(delivery, url, outcome);
  }

  /**
   * Why a delivery to a prediction's own URL is not attempted, or null: as an endpoint is disabled, an own URL
   * whose account's last WEBHOOK_DISABLE_AFTER_FAILURES attempted deliveries to it all failed, the first at least
   * WEBHOOK_DISABLE_AFTER_SECONDS ago, is skipped, until OWN_URL_RETRY_AFTER_SECONDS after the last of them.
   */
  async #ownUrlFailing(delivery: DueDelivery): Promise<string | null> {
    const { disableAfterFailures, disableAfterSeconds } = this.options;
    const { rows } = await this.pool.query<{ since: Date }>(
      `SELECT min(created_at) AS since FROM (
         SELECT status, created_at, updated_at FROM webhook_deliveries
         WHERE account_id = $1 AND endpoint_id IS NULL AND url = $2 AND id <> $3 AND attempts > 0
         ORDER BY created_at DESC LIMIT $4) recent
       HAVING count(*) = $4 AND bool_and(status <> 'SUCCEEDED')
         AND min(created_at) <= now() - make_interval(secs => $5::float8)
         AND max(updated_at) > now() - make_interval(secs => $6::float8)`,
      [
        delivery.account_id,
        delivery.url,
        delivery.id,
        disableAfterFailures,
        disableAfterSeconds,
        OWN_URL_RETRY_AFTER_SECONDS,
      ],
    );
    const since = rows[0]?.since;
    return since
      ? `the last ${disableAfterFailures} deliveries to this URL failed (since ${since.toISOString()}); not attempted`
      : null;
  }

  /** Records an attempt and what follows it (next attempt, end, endpoint disabled) in one transaction. */
  async #record(delivery: DueDelivery, url: string, outcome: AttemptOutcome): Promise<void> {
    const number = delivery.attempts + 1;
    // Attempts so far in this round (since creation or the last redelivery) minus one is the retries made.
    const delaySeconds =
      outcome.ok || outcome.refused
        ? undefined
        : this.options.retryScheduleSeconds[number - delivery.attempts_before_redelivery - 1];
    const status = outcome.ok ? 'SUCCEEDED' : delaySeconds === undefined ? 'FAILED' : 'PENDING';
    const nextAttemptAt = delaySeconds === undefined ? null : new Date(Date.now() + delaySeconds * 1000);
    const disabled = await this.prisma.$transaction(async (tx) => {
      const updated = await tx.$executeRaw`
        UPDATE webhook_deliveries
        SET attempts = ${number}, status = ${status}::"WebhookDeliveryStatus", url = ${url},
            last_response_code = ${outcome.responseCode}, last_latency_ms = ${outcome.latencyMs},
            last_error = ${outcome.error}, next_attempt_at = ${nextAttemptAt}, updated_at = now()
        WHERE id = ${delivery.id}::uuid AND attempts = ${delivery.attempts} AND status = 'PENDING'`;
      // Another run of this job recorded the attempt first (its process was presumed dead, and was not).
      if (updated === 0) return false;
      await tx.$executeRaw`
        INSERT INTO webhook_delivery_attempts (delivery_id, number, response_code, latency_ms, error)
        VALUES (${delivery.id}::uuid, ${number}, ${outcome.responseCode}, ${outcome.latencyMs}, ${outcome.error})`;
      if (nextAttemptAt) await this.enqueue(tx, delivery.id, number, nextAttemptAt);
      return delivery.endpoint_id === null ? false : this.#countOutcome(tx, delivery.endpoint_id, outcome.ok);
    });
    if (disabled) this.events.wake();
    if (delaySeconds === 0) this.wake();
  }

  /**
   * Keeps the endpoint's run of failures; one that reaches WEBHOOK_DISABLE_AFTER_FAILURES attempts, the first at
   * least WEBHOOK_DISABLE_AFTER_SECONDS ago, is disabled and its account told. Resolves true when disabled.
   */
  async #countOutcome(tx: PrismaNamespace.TransactionClient, endpointId: string, ok: boolean): Promise<boolean> {
    if (ok) {
      await tx.$executeRaw`
        UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL WHERE id = ${endpointId}::uuid`;
      return false;
    }
    const { disableAfterFailures, disableAfterSeconds } = this.options;
    const [endpoint] = await tx.$queryRaw<
      { account_id: string; url: string; failures: number; failing_since: Date; due: boolean }[]
    >`
      UPDATE webhook_endpoints
      SET consecutive_failures = consecutive_failures + 1, failing_since = coalesce(failing_since, now())
      WHERE id = ${endpointId}::uuid AND status = 'ACTIVE'
      RETURNING account_id, url, consecutive_failures AS failures, failing_since,
                consecutive_failures >= ${disableAfterFailures}
                  AND failing_since <= now() - make_interval(secs => ${disableAfterSeconds}::float8) AS due`;
    if (!endpoint?.due) return false;
    const reason = `${endpoint.failures} attempts in a row failed since ${endpoint.failing_since.toISOString()}`;
    await tx.$executeRaw`
      UPDATE webhook_endpoints SET status = 'DISABLED', disabled_reason = ${reason}, updated_at = now()
      WHERE id = ${endpointId}::uuid`;
    await this.audit.record(
      undefined,
      {
        action: AuditAction.WEBHOOK_ENDPOINT_AUTO_DISABLED,
        targetType: 'WebhookEndpoint',
        targetId: endpointId,
        details: { reason, owner: endpoint.account_id },
      },
      tx,
    );
    await this.events.emit(tx, [
      {
        type: EventType.WEBHOOK_ENDPOINT_DISABLED,
        accountId: endpoint.account_id,
        data: {
          endpointId,
          url: endpoint.url,
          consecutiveFailures: endpoint.failures,
          failingSince: endpoint.failing_since.toISOString(),
        },
      },
    ]);
    return true;
  }
}
