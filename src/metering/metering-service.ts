// Billing-grade metering for predict and explain: rate limits and quota in one atomic reservation, exactly-once usage records
// and idempotency keys. Reservations and records of concurrent calls are grouped into one statement each
// (group commit); each caller's promise settles only when its own record has committed. A group write that
// fails is retried record by record, so one bad record fails only its own call.
//
// Crash safety: what a running call holds — its reserved units (a quota_leases row) and its idempotency key — is
// a lease owned by this server process (ServerInstance). The call's usage record ends its leases in the same
// statement: billed units are kept only by deleting the call's lease, so units are billed or given back, never
// both. What a dead process held, and what a call of this process held when its record could not be written, the
// sweep gives back: at start, every few seconds, and at once when a client retries a dead call's requestId.
// An asynchronous prediction's lease belongs to no process (its row owns it, so it outlives restarts): it is taken
// and ended in the prediction's own transactions (reserveHeld, recordHeld), and the sweep leaves it alone.
import { setImmediate as nextMacrotask } from 'node:timers';
import DataLoader from 'dataloader';
import pg from 'pg';
import { GraphQLError } from 'graphql';
import type { ServerInstance } from '../db/server-instance.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import {
  ConflictError,
  DATABASE_RETRY_AFTER_SECONDS,
  ErrorCode,
  RateLimitedError,
  ServiceUnavailableError,
} from '../server/errors.js';
import type { Logger } from '../server/logger.js';

/** The contract a call is billed to, as the hot path needs it. */
export interface BillableContract {
  id: string;
  unitPrice: string;
  currency: string;
  rateLimitPerMinute: number | null;
  period: 'MONTH' | 'TOTAL';
}

export type UsageKind = 'PREDICTION' | 'EVALUATION' | 'EXPLANATION';

export interface UsageRecordInput {
  /** What the call metered (default PREDICTION). */
  kind?: UsageKind;
  predictionId: string;
  consumerId: string;
  apiKeyId: string | null;
  modelId: string | null;
  modelVersionId: string | null;
  contract: BillableContract | null;
  /**
   * Instances in the call, billed at the contract's unit price when it succeeds. What it takes from the quota is
   * what it reserved (its lease), which for explanations is more than one unit per instance.
   */
  units: number;
  /** OK, or the error code the call ended with. */
  status: string;
  latencyMs: number;
  requestId: string | null;
  /** For calls with an idempotency key: the result to store with the record, in the same statement. */
  idempotentResponse: unknown;
}

/** A contract whose quota counter differs from its records' quota units plus its running calls' leases, in its current period. */
export interface LedgerDiscrepancy {
  contractId: string;
  predictionsUsed: number;
  recordedUnits: number;
  leasedUnits: number;
  periodStart: Date;
}

export interface UsageLedgerReport {
  holds: boolean;
  discrepancies: LedgerDiscrepancy[];
  /** Quota leases of running calls of live servers, and of asynchronous predictions not yet ended. */
  liveLeases: number;
  /**
   * Quota leases whose server died, not yet given back (the sweep takes at most a few seconds), and leases of
   * asynchronous predictions that ended without ending them (stranded: nothing gives them back).
   */
  orphanedLeases: number;
  /** requestIds without an answer whose call's server died: a retry re-takes them at once. */
  stuckRequestIds: number;
}

export type IdempotencyClaim = { kind: 'first' } | { kind: 'replay'; response: unknown };

export class QuotaExceededError extends GraphQLError {
  constructor(used: number, quota: number, resetsAt: Date | null) {
    super(
      `The contract's quota is used up (${used} of ${quota})${resetsAt ? `; it resets at ${resetsAt.toISOString()}` : ''}`,
      {
        extensions: {
          code: ErrorCode.QUOTA_EXCEEDED,
          used,
          quota,
          resetsAt: resetsAt?.toISOString() ?? null,
          http: { status: 429 },
        },
      },
    );
  }
}

/** The contract stopped being usable (suspended, revoked, expired…) since it was chosen: choose again. */
export class ContractInactiveError extends Error {}

const IDEMPOTENCY_TTL_HOURS = 24;
/** After a record write with an unknown outcome: how often, and how far apart, the outcome is looked for. */
const SETTLE_ATTEMPTS = 3;
const SETTLE_RETRY_MS = 500;
const CLAIM_POLL_MS = 20;
const CLAIM_WAIT_MS = 60_000;

/** How long a lease or key this process holds for a call it no longer runs stays, before its own sweep takes it. */
const STRANDED_AFTER = "interval '1 minute'";

/**
 * Gives back what calls that no longer run held: their quota leases — each only to the period it was taken from —
 * and their unanswered idempotency keys. Those are the calls of dead servers; this server's calls $1 whose record
 * could not be written; and this server's ($2) calls that are not running ($3: the running ones) and held it for
 * over a minute — a reservation or claim whose outcome was lost with its connection committed after all. Deleting
 * the lease row is what gives units back, so two sweeps, or a sweep and a late record, never give back or bill the
 * same lease twice. Nothing is taken unless this server still holds its liveness lock (else its own running calls
 * would look dead).
 */
const SWEEP = `WITH live AS (SELECT instance FROM mm_live_server_instances()),
  me AS (SELECT 1 FROM live WHERE instance = $2),
  gone AS (
    DELETE FROM quota_leases l
    WHERE EXISTS (SELECT 1 FROM me) AND l.server_instance IS NOT NULL AND (l.prediction_id = ANY($1::uuid[])
      OR l.server_instance NOT IN (SELECT instance FROM live)
      OR (l.server_instance = $2 AND l.prediction_id <> ALL($3::uuid[]) AND l.created_at < now() - ${STRANDED_AFTER}))
    RETURNING l.contract_id, l.units, l.period_start
  ), returned AS (
    SELECT mm_give_back_units(array_agg(contract_id), array_agg(period_start), array_agg(units)) AS units FROM gone
    HAVING count(*) > 0
  ), freed AS (
    DELETE FROM idempotency_keys k
    WHERE EXISTS (SELECT 1 FROM me) AND k.response IS NULL AND (k.prediction_id = ANY($1::uuid[])
      OR k.server_instance IS NULL OR k.server_instance NOT IN (SELECT instance FROM live)
      OR (k.server_instance = $2 AND k.prediction_id <> ALL($3::uuid[]) AND k.created_at < now() - ${STRANDED_AFTER}))
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone)::int AS leases, coalesce((SELECT units FROM returned), 0) AS units,
         (SELECT count(*) FROM freed)::int AS request_ids`;

/**
 * Writes a group of usage records and ends their calls' leases, in one statement. A call is kept (billed, its
 * answer stored under its requestId) only when it succeeded and still holds its lease and its key — a sweep
 * that presumed its server dead may have taken them; every other call's lease is given back and its key freed,
 * so a retry runs. Returns the successful calls that were not kept (`returned` is read so that it runs).
 */
const RECORD = `WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::int[],
      $8::numeric[], $9::char(3)[], $10::text[], $11::float8[], $12::text[], $13::jsonb[], $14::"UsageKind"[])
      AS t(prediction_id, consumer_id, api_key_id, model_id, model_version_id, contract_id, units, unit_price,
           currency, status, latency_ms, request_id, response, kind)
  ), ended AS (
    DELETE FROM quota_leases l USING input i WHERE l.prediction_id = i.prediction_id
    RETURNING l.prediction_id, l.contract_id, l.units, l.period_start
  ), answered AS (
    UPDATE idempotency_keys k SET response = i.response
    FROM input i
    WHERE i.status = 'OK' AND i.response IS NOT NULL AND k.response IS NULL
      AND k.caller_id = i.consumer_id AND k.request_id = i.request_id AND k.prediction_id = i.prediction_id
      AND (i.contract_id IS NULL OR EXISTS (SELECT 1 FROM ended e WHERE e.prediction_id = i.prediction_id))
    RETURNING k.prediction_id
  ), outcome AS (
    SELECT i.*, e.contract_id AS leased_from, e.units AS leased_units, e.period_start AS leased_in,
      i.status = 'OK' AND (i.contract_id IS NULL OR e.prediction_id IS NOT NULL)
        AND (i.response IS NULL OR a.prediction_id IS NOT NULL) AS kept
    FROM input i
    LEFT JOIN ended e ON e.prediction_id = i.prediction_id
    LEFT JOIN answered a ON a.prediction_id = i.prediction_id
  ), returned AS (
    SELECT mm_give_back_units(array_agg(leased_from), array_agg(leased_in), array_agg(leased_units)) AS units
    FROM outcome WHERE leased_from IS NOT NULL AND NOT kept HAVING count(*) > 0
  ), freed AS (
    DELETE FROM idempotency_keys k USING outcome o
    WHERE NOT o.kept AND k.response IS NULL
      AND k.caller_id = o.consumer_id AND k.request_id = o.request_id AND k.prediction_id = o.prediction_id
  ), recorded AS (
    INSERT INTO usage_records (prediction_id, consumer_id, api_key_id, model_id, model_version_id, contract_id,
      units, billable_units, quota_units, unit_price, currency, status, latency_ms, request_id, quota_period_start,
      kind)
    SELECT prediction_id, consumer_id, api_key_id, model_id, model_version_id, contract_id, units,
      CASE WHEN kept AND leased_from IS NOT NULL THEN units ELSE 0 END,
      CASE WHEN kept AND leased_from IS NOT NULL THEN leased_units ELSE 0 END, unit_price, currency,
      CASE WHEN status = 'OK' AND NOT kept THEN '${ErrorCode.SERVICE_UNAVAILABLE}' ELSE status END,
      latency_ms, request_id, leased_in, kind
    FROM outcome
  )
  SELECT (SELECT units FROM returned) AS returned,
         array(SELECT prediction_id FROM outcome WHERE status = 'OK' AND NOT kept) AS lost`;

/** RECORD for calls that hold no lease and no key (no contract, no requestId), with the same parameters. */
const RECORD_UNHELD = `INSERT INTO usage_records (prediction_id, consumer_id, api_key_id, model_id, model_version_id,
    contract_id, units, billable_units, unit_price, currency, status, latency_ms, request_id, kind)
  SELECT t.prediction_id, t.consumer_id, t.api_key_id, t.model_id, t.model_version_id, t.contract_id, t.units, 0,
    t.unit_price, t.currency, t.status, t.latency_ms, t.request_id, t.kind
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::int[], $8::numeric[],
    $9::char(3)[], $10::text[], $11::float8[], $12::text[], $13::jsonb[], $14::"UsageKind"[])
    AS t(prediction_id, consumer_id, api_key_id, model_id, model_version_id, contract_id, units, unit_price,
         currency, status, latency_ms, request_id, response, kind)
  RETURNING NULL::uuid[] AS lost`;

export function nextMonthStart(periodStart: Date): Date {
  return new Date(Date.UTC(periodStart.getUTCFullYear(), periodStart.getUTCMonth() + 1, 1));
}

/** What mm_reserve_predictions answers. */
interface ReservationRow {
  reserved: boolean;
  active: boolean;
  rate_limited: boolean;
  retry_after_ms: number;
  used: number;
  quota: number | null;
  period_start: Date;
}

/** A reservation's outcome: true, or why the call does not fit (ContractInactiveError: choose another contract). */
function reservationOutcome(
  contract: BillableContract,
  row: ReservationRow,
): true | GraphQLError | ContractInactiveError {
  if (row.reserved) return true;
  if (!row.active) return new ContractInactiveError(contract.id);
  if (row.rate_limited) {
    return new RateLimitedError(
      `The contract allows ${contract.rateLimitPerMinute} calls a minute`,
      row.retry_after_ms / 1000,
    );
  }
  return new QuotaExceededError(
    row.used,
    row.quota ?? 0,
    contract.period === 'MONTH' ? nextMonthStart(row.period_start) : null,
  );
}

/** RECORD's parameters for a group of records. */
function recordValues(items: readonly UsageRecordInput[]): unknown[] {
  const column = <T>(pick: (r: UsageRecordInput) => T) => items.map(pick);
  return [
    column((r) => r.predictionId),
    column((r) => r.consumerId),
    column((r) => r.apiKeyId),
    column((r) => r.modelId),
    column((r) => r.modelVersionId),
    column((r) => r.contract?.id ?? null),
    column((r) => r.units),
    column((r) => r.contract?.unitPrice ?? '0'),
    column((r) => r.contract?.currency ?? null),
    column((r) => r.status),
    column((r) => r.latencyMs),
    column((r) => r.requestId),
    column((r) =>
      r.status === 'OK' && r.requestId !== null && r.idempotentResponse !== undefined
        ? JSON.stringify(r.idempotentResponse)
        : null,
    ),
    column((r) => r.kind ?? 'PREDICTION'),
  ];
}

interface ReservationRequest {
  contract: BillableContract;
  units: number;
  predictionId: string;
}

export class MeteringService {
  readonly #reservations: DataLoader<ReservationRequest, true | GraphQLError | ContractInactiveError>;
  readonly #records: DataLoader<UsageRecordInput, true>;
  /** Calls of this process whose usage record could not be written: the sweep gives back what they held. */
  readonly #orphans = new Set<string>();
  /** Calls of this process that may hold a lease or key, from their first claim or reservation to their record. */
  readonly #running = new Set<string>();
  /** Set when the server stops: duplicates waiting for a running call's answer stop waiting. */
  #stopping = false;
  readonly #timers: NodeJS.Timeout[];
  #sweepChain: Promise<unknown> = Promise.resolve();
  #nextSweep: Promise<void> | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly instance: ServerInstance,
    private readonly logger: Logger,
    /** How often the leases of dead servers, and of this server's calls whose record failed, are given back. */
    sweepIntervalMs: number,
  ) {
    const options = { cache: false, maxBatchSize: 512, batchScheduleFn: (run: () => void) => nextMacrotask(run) };
    this.#reservations = new DataLoader((items) => this.#reserveBatch(items), options);
    this.#records = new DataLoader((items) => this.#recordBatch(items), options);
    this.#timers = [
      setInterval(() => void this.#dropExpiredKeys().catch(() => undefined), 3_600_000),
      setInterval(() => void this.sweep().catch(() => undefined), sweepIntervalMs),
    ];
    for (const timer of this.#timers) timer.unref();
  }

  /**
   * Counts the call against the contract's per-minute rate limit and takes `units` from its quota as a lease of
   * the call `predictionId`, atomically, re-checking in the same statement that the contract is ACTIVE and
   * unexpired. RATE_LIMITED or QUOTA_EXCEEDED when the call does not fit (and then nothing is counted);
   * ContractInactiveError when the contract is no longer usable. The call's usage record ends the lease.
   */
  async reserve(contract: BillableContract, units: number, predictionId: string): Promise<void> {
    this.#running.add(predictionId);
    const outcome = await this.#reservations.load({ contract, units, predictionId });
    if (outcome instanceof Error) throw outcome;
  }

  /**
   * Writes the call's usage record, ending its leases (a successful call's units are billed, a failed call's
   * given back, its requestId freed); resolves once durable. Rejects with SERVICE_UNAVAILABLE when a successful
   * call cannot be kept — its record could not be written, or what it held was taken back while it ran — and then
   * nothing of it is billed: its leases are given back, at once or by the sweep.
   */
  async record(input: UsageRecordInput): Promise<void> {
    try {
      await this.#records.load(input);
    } finally {
      this.#running.delete(input.predictionId);
    }
  }

  /**
   * reserve, for a call whose lease belongs to its own row rather than to this process (an asynchronous
   * prediction): taken in the caller's transaction `tx`, so the lease exists if and only if that row does, and
   * left alone by the sweep. The caller ends it with recordHeld.
   */
  async reserveHeld(tx: pg.ClientBase, contract: BillableContract, units: number, predictionId: string): Promise<void> {
    // mm_reserve_predictions turns synchronous commit off for its transaction (its caller's record flushes it);
    // this transaction answers the caller itself, so it commits durably: turned on again after the function ran
    // (the select list runs after FROM), in the same statement, so the contract's row lock waits for no round trip.
    const { rows } = await tx.query<ReservationRow>(
      `SELECT reserved, active, rate_limited, retry_after_ms, used, quota, period_start,
              set_config('synchronous_commit', 'on', true)
       FROM mm_reserve_predictions($1, $2, $3, NULL)`,
      [contract.id, units, predictionId],
    );
    const outcome = reservationOutcome(contract, rows[0]!);
    if (outcome !== true) throw outcome;
  }

  /**
   * record, in the caller's transaction `tx`, for a call whose lease reserveHeld took: ends the lease (billed when
   * the call succeeded, else given back). False when a successful call found no lease to bill (it was not billed).
   */
  async recordHeld(tx: pg.ClientBase, input: UsageRecordInput): Promise<boolean> {
    // The same write as recordIn's; only the lease's owner differs (the row, so nothing here tracks or settles it).
    const [outcome] = await this.#write([input], tx);
    return outcome === true;
  }

  /**
   * Writes the call's usage record on `client`, inside the caller's transaction, so that billing commits or rolls
   * back with the caller's other writes (a batch chunk's results). Throws SERVICE_UNAVAILABLE when a successful
   * call cannot be kept (what it held was taken back while it ran). The caller then ends the call with `settle`.
   */
  async recordIn(client: pg.ClientBase, input: UsageRecordInput): Promise<void> {
    const [outcome] = await this.#write([input], client);
    if (outcome !== true) throw outcome!;
  }

  /**
   * Ends a call recorded with `recordIn` once its transaction ended: committed, its lease is gone with the
   * record; rolled back, what it still holds is given back now.
   */
  async settle(predictionId: string, committed: boolean): Promise<void> {
    this.#running.delete(predictionId);
    if (committed) return;
    this.#orphans.add(predictionId);
    await this.sweep();
  }

  /**
   * Checks that every contract's quota counter equals its billed records' quota units plus its running calls' leases in its
   * current period (mm_usage_ledger_discrepancies; exact at any moment), and that nothing is held for a server
   * that died.
   */
  async verifyLedger(): Promise<UsageLedgerReport> {
    const [discrepancies, leases] = await Promise.all([
      this.pool.query<{
        contract_id: string;
        predictions_used: number;
        recorded_units: number;
        leased_units: number;
        period_start: Date;
      }>(
        'SELECT contract_id, predictions_used, recorded_units, leased_units, period_start FROM mm_usage_ledger_discrepancies()',
      ),
      // A lease of no server is an asynchronous prediction's: live while that prediction is QUEUED or RUNNING.
      this.pool.query<{ live_leases: number; orphaned_leases: number; stuck_request_ids: number }>(
        `WITH live AS (SELECT instance FROM mm_live_server_instances()),
         leases AS (
           SELECT CASE WHEN l.server_instance IS NULL
                       THEN EXISTS (SELECT 1 FROM async_predictions p
                                    WHERE p.id = l.prediction_id AND p.status IN ('QUEUED', 'RUNNING'))
                       ELSE l.server_instance IN (SELECT instance FROM live) END AS live
           FROM quota_leases l
         )
         SELECT (SELECT count(*) FROM leases WHERE live)::int AS live_leases,
                (SELECT count(*) FROM leases WHERE NOT live)::int AS orphaned_leases,
                (SELECT count(*) FROM idempotency_keys WHERE response IS NULL
                   AND (server_instance IS NULL OR server_instance NOT IN (SELECT instance FROM live)))::int AS stuck_request_ids`,
      ),
    ]);
    const { live_leases, orphaned_leases, stuck_request_ids } = leases.rows[0]!;
    return {
      holds: discrepancies.rows.length === 0 && orphaned_leases === 0 && stuck_request_ids === 0,
      discrepancies: discrepancies.rows.map((r) => ({
        contractId: r.contract_id,
        predictionsUsed: r.predictions_used,
        recordedUnits: r.recorded_units,
        leasedUnits: r.leased_units,
        periodStart: r.period_start,
      })),
      liveLeases: live_leases,
      orphanedLeases: orphaned_leases,
      stuckRequestIds: stuck_request_ids,
    };
  }

  /**
   * Claims an idempotency key for the call `predictionId`. The first caller gets `first`; a retry of a finished
   * call gets the stored response; a concurrent duplicate waits for the first to finish. A key whose call's
   * server died unanswered is taken over at once, after giving back what that server held. Another input under
   * the same key is a CONFLICT.
   */
  async claim(callerId: string, requestId: string, inputHash: string, predictionId: string): Promise<IdempotencyClaim> {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    this.#running.add(predictionId);
    for (;;) {
      const { rows: claimed } = await this.pool.query<{ inserted: boolean }>({
        name: 'mm_idempotency_claim',
        text: `INSERT INTO idempotency_keys (caller_id, request_id, input_hash, prediction_id, server_instance)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (caller_id, request_id) DO UPDATE SET input_hash = EXCLUDED.input_hash, response = NULL,
                 created_at = now(), prediction_id = EXCLUDED.prediction_id, server_instance = EXCLUDED.server_instance
                 WHERE idempotency_keys.created_at < now() - make_interval(hours => $6)
                    OR (idempotency_keys.response IS NULL
                        AND NOT mm_server_instance_alive(idempotency_keys.server_instance))
               RETURNING xmax = 0 AS inserted`,
        values: [callerId, requestId, inputHash, predictionId, this.instance.id, IDEMPOTENCY_TTL_HOURS],
      });
      if (claimed.length === 1) {
        // Taken over from a dead server: its leases go back first, so that the retry finds the quota it needs.
        if (!claimed[0]!.inserted) await this.sweep();
        return { kind: 'first' };
      }
      const { rows } = await this.pool.query<{ input_hash: string; response: unknown }>({
        name: 'mm_idempotency_read',
        text: 'SELECT input_hash, response FROM idempotency_keys WHERE caller_id = $1 AND request_id = $2',
        values: [callerId, requestId],
      });
      const existing = rows[0];
      if (existing) {
        if (existing.input_hash !== inputHash)
          throw new ConflictError('requestId was already used with a different input');
        if (existing.response !== null) {
          // Answered from the stored result: this call holds nothing and writes no record.
          this.#running.delete(predictionId);
          return { kind: 'replay', response: existing.response };
        }
      }
      if (this.#stopping) throw new ServiceUnavailableError('The server is stopping; retry', 1);
      if (Date.now() > deadline) throw new ConflictError('A call with this requestId is still running; retry later');
      // The first call is still running (or just failed and released the key): look again shortly.
      await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
    }
  }

  /**
   * Gives back what dead servers and this server's orphaned calls held (SWEEP). Concurrent callers share one
   * run, which starts after they asked.
   */
  sweep(): Promise<void> {
    this.#nextSweep ??= this.#sweepChain.then(() => {
      this.#nextSweep = null;
      return this.#sweepOnce();
    });
    const run = this.#nextSweep;
    this.#sweepChain = run.catch(() => undefined);
    return run;
  }

  /** The server is stopping: duplicates still waiting for a running call's answer are told to retry. */
  stopWaiting(): void {
    this.#stopping = true;
  }

  /** Stops the timers, giving back what this server's orphaned calls held while the database is still open. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#orphans.size) await this.sweep().catch(() => undefined);
  }

  async #sweepOnce(): Promise<void> {
    const orphans = [...this.#orphans];
    const { rows } = await this.pool.query<{ leases: number; units: number; request_ids: number }>({
      name: 'mm_sweep_leases',
      text: SWEEP,
      values: [orphans, this.instance.id, [...this.#running]],
    });
    for (const id of orphans) this.#orphans.delete(id);
    const { leases, units, request_ids } = rows[0]!;
    if (leases || request_ids) {
      this.logger.info(
        { leases, units, requestIds: request_ids },
        'gave back the quota units and requestIds of calls whose server stopped or whose record failed',
      );
    }
  }

  async #dropExpiredKeys(): Promise<void> {
    await this.pool.query(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)`, [
      IDEMPOTENCY_TTL_HOURS * 2,
    ]);
  }

  /** One statement for a group of reservations, taking row locks in contract-id order (no deadlocks). */
  async #reserveBatch(items: readonly ReservationRequest[]) {
    const order = items.map((_, i) => i).sort((a, b) => items[a]!.contract.id.localeCompare(items[b]!.contract.id));
    const { rows } = await this.pool.query<ReservationRow & { n: string }>({
      name: 'mm_reserve_batch',
      text: `SELECT r.n, x.reserved, x.active, x.rate_limited, x.retry_after_ms, x.used, x.quota, x.period_start
             FROM unnest($1::uuid[], $2::int[], $3::uuid[]) WITH ORDINALITY AS r(contract_id, units, prediction_id, n)
             CROSS JOIN LATERAL mm_reserve_predictions(r.contract_id, r.units, r.prediction_id, $4) AS x
             ORDER BY r.n`,
      values: [
        order.map((i) => items[i]!.contract.id),
        order.map((i) => items[i]!.units),
        order.map((i) => items[i]!.predictionId),
        this.instance.id,
      ],
    });
    const results: (true | GraphQLError | ContractInactiveError)[] = new Array(items.length);
    rows.forEach((row, position) => {
      const index = order[position]!;
      results[index] = reservationOutcome(items[index]!.contract, row);
    });
    return results;
  }

  /**
   * Writes a group in one statement; when PostgreSQL refuses it (one bad record fails them all), writes each
   * record alone, so only the guilty record's call fails. Only a refusal is retried: it proves the statement
   * rolled back. A lost connection (or a database shutting down) leaves the outcome unknown: it may have
   * committed, and then a retry or a release would bill twice or give back billed units — settleUnknown finds out.
   */
  async #recordBatch(items: readonly UsageRecordInput[]): Promise<(true | Error)[]> {
    try {
      return await this.#write(items);
    } catch (error) {
      if (!(error instanceof pg.DatabaseError) || isDatabaseUnavailable(error)) return this.#settleUnknown(items);
      const outcomes =
        items.length === 1
          ? [this.#notWritten(items[0]!, error)]
          : await Promise.all(
              items.map((item) =>
                this.#write([item]).then(
                  ([outcome]) => outcome!,
                  (alone: unknown) => this.#notWritten(item, alone),
                ),
              ),
            );
      // What the refused calls held goes back before they are answered (else the periodic sweep does it).
      await this.sweep().catch(() => undefined);
      return outcomes;
    }
  }

  /**
   * After a record write whose outcome is unknown: ends what these calls still hold (the sweep waits on the lost
   * statement's row locks if it still runs, and finds the leases gone if it committed), then answers the calls
   * whose records were kept — so a committed call is answered, never billed unanswered — and tells the others to
   * retry. While the database stays unreachable they are left to the periodic sweep.
   */
  async #settleUnknown(items: readonly UsageRecordInput[]): Promise<(true | Error)[]> {
    const ids = items.map((item) => item.predictionId);
    const notKept = () =>
      new ServiceUnavailableError(
        'The call could not be recorded, so its answer is withheld and it was not billed; retry it',
        DATABASE_RETRY_AFTER_SECONDS,
      );
    for (let attempt = 1; attempt <= SETTLE_ATTEMPTS; attempt++) {
      try {
        for (const id of ids) this.#orphans.add(id);
        await this.sweep();
        const { rows } = await this.pool.query<{ prediction_id: string }>({
          name: 'mm_kept_records',
          text: `SELECT prediction_id FROM usage_records WHERE prediction_id = ANY($1::uuid[]) AND status = 'OK'`,
          values: [ids],
        });
        const kept = new Set(rows.map((r) => r.prediction_id));
        return items.map((item) => (kept.has(item.predictionId) ? true : notKept()));
      } catch {
        await new Promise((resolve) => setTimeout(resolve, SETTLE_RETRY_MS));
      }
    }
    return items.map(() => notKept());
  }

  /** A record PostgreSQL refused (a defect): what its call holds goes back with the next sweep. */
  #notWritten(item: UsageRecordInput, cause: unknown): Error {
    this.#orphans.add(item.predictionId);
    return new Error('The usage record could not be written', { cause });
  }

  async #write(items: readonly UsageRecordInput[], db: pg.Pool | pg.ClientBase = this.pool): Promise<(true | Error)[]> {
    // Calls without a contract or a requestId (owners' own calls, downloads) hold nothing: a plain insert.
    const holdsNothing = items.every((r) => r.contract === null && r.requestId === null);
    const { rows } = await db.query<{ lost: string[] }>({
      ...(holdsNothing
        ? { name: 'mm_record_usage_unheld', text: RECORD_UNHELD }
        : { name: 'mm_record_usage_batch', text: RECORD }),
      values: recordValues(items),
    });
    const lost = new Set(rows[0]?.lost ?? []);
    return items.map((item) =>
      lost.has(item.predictionId)
        ? new ServiceUnavailableError(
            'What this call held was given back while it ran (its server was presumed stopped); it was not billed: retry it',
            1,
          )
        : true,
    );
  }
}
