// Billing-grade metering for predict: rate limits and quota in one atomic reservation, exactly-once usage records
// and idempotency keys. Reservations and records of concurrent calls are grouped into one statement each
// (group commit); each caller's promise settles only when its own record has committed. A group write that
// fails is retried record by record, so one bad record fails only its own call.
import { setImmediate as nextMacrotask } from 'node:timers';
import DataLoader from 'dataloader';
import pg from 'pg';
import { GraphQLError } from 'graphql';
import { ConflictError, ErrorCode, RateLimitedError } from '../server/errors.js';

/** The contract a call is billed to, as the hot path needs it. */
export interface BillableContract {
  id: string;
  unitPrice: string;
  currency: string;
  rateLimitPerMinute: number | null;
  period: 'MONTH' | 'TOTAL';
}

export interface Reservation {
  contractId: string;
  units: number;
  /** The quota period the units were taken from: a release only gives them back to that period. */
  periodStart: Date;
}

export interface UsageRecordInput {
  predictionId: string;
  consumerId: string;
  apiKeyId: string | null;
  modelId: string | null;
  modelVersionId: string | null;
  contract: BillableContract | null;
  units: number;
  /** OK, or the error code the call ended with. */
  status: string;
  latencyMs: number;
  requestId: string | null;
  /** Units taken from the quota before inference: kept when OK, given back otherwise. */
  reservation: Reservation | null;
  /** For calls with an idempotency key: the result to store with the record, in the same statement. */
  idempotentResponse: unknown;
}

/** A contract whose quota counter differs from the billable units recorded in its current period. */
export interface LedgerDiscrepancy {
  contractId: string;
  predictionsUsed: number;
  recordedUnits: number;
  periodStart: Date;
}

export interface UsageLedgerReport {
  holds: boolean;
  discrepancies: LedgerDiscrepancy[];
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
const CLAIM_POLL_MS = 20;
const CLAIM_WAIT_MS = 60_000;

/**
 * Gives reservations ($1 contract ids, $2 units, $3 the period each was taken from) back, each only to the
 * period it came from: after a month turn the new period never had them.
 */
const RELEASE = `UPDATE contracts c SET predictions_used = greatest(0, c.predictions_used - r.units)
  FROM (SELECT contract_id, period_start, sum(units)::int AS units
        FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS t(contract_id, units, period_start)
        GROUP BY contract_id, period_start) AS r
  WHERE c.id = r.contract_id AND c.period_start = r.period_start`;

/** RELEASE's $1–$3 for these reservations. */
function releaseParameters(reservations: readonly Reservation[]): [string[], number[], Date[]] {
  return [
    reservations.map((r) => r.contractId),
    reservations.map((r) => r.units),
    reservations.map((r) => r.periodStart),
  ];
}

export function nextMonthStart(periodStart: Date): Date {
  return new Date(Date.UTC(periodStart.getUTCFullYear(), periodStart.getUTCMonth() + 1, 1));
}

export class MeteringService {
  readonly #reservations: DataLoader<
    { contract: BillableContract; units: number },
    Reservation | GraphQLError | ContractInactiveError
  >;
  readonly #records: DataLoader<UsageRecordInput, true>;
  /** Reservations already given back after their record failed: a later record of the call must not again. */
  readonly #released = new WeakSet<Reservation>();
  readonly #cleanup: NodeJS.Timeout;

  constructor(private readonly pool: pg.Pool) {
    const options = { cache: false, maxBatchSize: 512, batchScheduleFn: (run: () => void) => nextMacrotask(run) };
    this.#reservations = new DataLoader((items) => this.#reserveBatch(items), options);
    this.#records = new DataLoader((items) => this.#recordBatch(items), options);
    this.#cleanup = setInterval(() => void this.#dropExpiredKeys().catch(() => undefined), 3_600_000);
    this.#cleanup.unref();
  }

  /**
   * Counts the call against the contract's per-minute rate limit and takes `units` from its quota, atomically,
   * re-checking in the same statement that the contract is ACTIVE and unexpired. RATE_LIMITED or QUOTA_EXCEEDED
   * when the call does not fit (and then nothing is counted); ContractInactiveError when the contract is no
   * longer usable.
   */
  async reserve(contract: BillableContract, units: number): Promise<Reservation> {
    const outcome = await this.#reservations.load({ contract, units });
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /**
   * Writes the call's usage record (and releases a failed call's reservation); resolves once durable. When the
   * record cannot be written it rejects, after giving the call's reservation back: units are never consumed
   * without a record.
   */
  async record(input: UsageRecordInput): Promise<void> {
    await this.#records.load(input);
  }

  /**
   * Checks that every contract's quota counter equals the billable units recorded in its current period (see
   * mm_usage_ledger_discrepancies). Exact only while no call is in flight: those hold reservations that have
   * no record yet.
   */
  async verifyLedger(): Promise<UsageLedgerReport> {
    const { rows } = await this.pool.query<{
      contract_id: string;
      predictions_used: number;
      recorded_units: number;
      period_start: Date;
    }>('SELECT contract_id, predictions_used, recorded_units, period_start FROM mm_usage_ledger_discrepancies()');
    return {
      holds: rows.length === 0,
      discrepancies: rows.map((r) => ({
        contractId: r.contract_id,
        predictionsUsed: r.predictions_used,
        recordedUnits: r.recorded_units,
        periodStart: r.period_start,
      })),
    };
  }

  /**
   * Claims an idempotency key. The first caller gets `first`; a retry of a finished call gets the stored
   * response; a concurrent duplicate waits for the first to finish. Another input under the same key is a
   * CONFLICT.
   */
  async claim(callerId: string, requestId: string, inputHash: string): Promise<IdempotencyClaim> {
    const deadline = Date.now() + CLAIM_WAIT_MS;
    for (;;) {
      const inserted = await this.pool.query({
        name: 'mm_idempotency_claim',
        text: `INSERT INTO idempotency_keys (caller_id, request_id, input_hash) VALUES ($1, $2, $3)
               ON CONFLICT (caller_id, request_id) DO UPDATE SET input_hash = EXCLUDED.input_hash, response = NULL, created_at = now()
                 WHERE idempotency_keys.created_at < now() - make_interval(hours => $4)
               RETURNING 1`,
        values: [callerId, requestId, inputHash, IDEMPOTENCY_TTL_HOURS],
      });
      if (inserted.rowCount === 1) return { kind: 'first' };
      const { rows } = await this.pool.query<{ input_hash: string; response: unknown }>({
        name: 'mm_idempotency_read',
        text: 'SELECT input_hash, response FROM idempotency_keys WHERE caller_id = $1 AND request_id = $2',
        values: [callerId, requestId],
      });
      const existing = rows[0];
      if (existing) {
        if (existing.input_hash !== inputHash)
          throw new ConflictError('requestId was already used with a different input');
        if (existing.response !== null) return { kind: 'replay', response: existing.response };
      }
      if (Date.now() > deadline) throw new ConflictError('A call with this requestId is still running; retry later');
      // The first call is still running (or just failed and released the key): look again shortly.
      await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
    }
  }

  /** Frees a key whose call failed, so a retry runs again. */
  async abandon(callerId: string, requestId: string): Promise<void> {
    await this.pool.query({
      name: 'mm_idempotency_abandon',
      text: 'DELETE FROM idempotency_keys WHERE caller_id = $1 AND request_id = $2 AND response IS NULL',
      values: [callerId, requestId],
    });
  }

  close(): void {
    clearInterval(this.#cleanup);
  }

  async #dropExpiredKeys(): Promise<void> {
    await this.pool.query(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)`, [
      IDEMPOTENCY_TTL_HOURS * 2,
    ]);
  }

  /** One statement for a group of reservations, taking row locks in contract-id order (no deadlocks). */
  async #reserveBatch(items: readonly { contract: BillableContract; units: number }[]) {
    const order = items.map((_, i) => i).sort((a, b) => items[a]!.contract.id.localeCompare(items[b]!.contract.id));
    const { rows } = await this.pool.query<{
      n: string;
      reserved: boolean;
      active: boolean;
      rate_limited: boolean;
      retry_after_ms: number;
      used: number;
      quota: number | null;
      period_start: Date;
    }>({
      name: 'mm_reserve_batch',
      text: `SELECT r.n, x.reserved, x.active, x.rate_limited, x.retry_after_ms, x.used, x.quota, x.period_start
             FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS r(contract_id, units, n)
             CROSS JOIN LATERAL mm_reserve_predictions(r.contract_id, r.units) AS x
             ORDER BY r.n`,
      values: [order.map((i) => items[i]!.contract.id), order.map((i) => items[i]!.units)],
    });
    const results: (Reservation | GraphQLError | ContractInactiveError)[] = new Array(items.length);
    rows.forEach((row, position) => {
      const index = order[position]!;
      const { contract, units } = items[index]!;
      results[index] = row.reserved
        ? { contractId: contract.id, units, periodStart: row.period_start }
        : !row.active
          ? new ContractInactiveError(contract.id)
          : row.rate_limited
            ? new RateLimitedError(
                `The contract allows ${contract.rateLimitPerMinute} calls a minute`,
                row.retry_after_ms / 1000,
              )
            : new QuotaExceededError(
                row.used,
                row.quota ?? 0,
                contract.period === 'MONTH' ? nextMonthStart(row.period_start) : null,
              );
    });
    return results;
  }

  /**
   * Writes a group in one statement; when PostgreSQL refuses it (one bad record fails them all), writes each
   * record alone, so only the guilty record's call fails. Only a refusal is retried: it proves the statement
   * rolled back. A lost connection leaves the outcome unknown (it may have committed), and a retry or a
   * release could then bill twice or give back units that were billed.
   */
  async #recordBatch(items: readonly UsageRecordInput[]): Promise<(true | Error)[]> {
    try {
      await this.#write(items);
      return items.map(() => true);
    } catch (error) {
      if (!(error instanceof pg.DatabaseError)) throw error;
      if (items.length === 1) return [await this.#notWritten(items[0]!, error)];
      return Promise.all(
        items.map((item) =>
          this.#write([item]).then(
            () => true as const,
            (alone: unknown) => {
              if (!(alone instanceof pg.DatabaseError)) throw alone;
              return this.#notWritten(item, alone);
            },
          ),
        ),
      );
    }
  }

  /** A record that could not be written gives its reservation back (once), then fails its call. */
  async #notWritten(item: UsageRecordInput, cause: unknown): Promise<Error> {
    const { reservation } = item;
    if (reservation && !this.#released.has(reservation)) {
      try {
        await this.#release([reservation]);
        this.#released.add(reservation);
      } catch {
        // The database is unreachable: the call's error record, if it can be written later, releases it.
      }
    }
    return new Error('The usage record could not be written', { cause });
  }

  async #release(reservations: Reservation[]): Promise<void> {
    await this.pool.query({
      name: 'mm_release_reservations',
      text: RELEASE,
      values: releaseParameters(reservations),
    });
  }

  /** One statement: release failed calls' reservations, insert every record, store idempotent responses. */
  async #write(items: readonly UsageRecordInput[]): Promise<void> {
    const releases = items
      .map((r) => (r.status !== 'OK' && r.reservation && !this.#released.has(r.reservation) ? r.reservation : null))
      .filter((r) => r !== null);
    const stored = items.filter((r) => r.status === 'OK' && r.requestId !== null && r.idempotentResponse !== undefined);
    const column = <T>(pick: (r: UsageRecordInput) => T) => items.map(pick);
    await this.pool.query({
      name: 'mm_record_usage_batch',
      text: `WITH released AS (${RELEASE} RETURNING 1), inserted AS (
               INSERT INTO usage_records (prediction_id, consumer_id, api_key_id, model_id, model_version_id, contract_id,
                 units, billable_units, unit_price, currency, status, latency_ms, request_id, quota_period_start)
               SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::uuid[], $9::uuid[], $10::int[],
                 $11::int[], $12::numeric[], $13::char(3)[], $14::text[], $15::float8[], $16::text[], $17::timestamptz[])
               RETURNING 1
             ), responses AS (
               UPDATE idempotency_keys k SET response = r.response
               FROM unnest($18::uuid[], $19::text[], $20::jsonb[]) AS r(caller_id, request_id, response)
               WHERE k.caller_id = r.caller_id AND k.request_id = r.request_id
               RETURNING 1
             )
             SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM inserted) AS inserted,
                    (SELECT count(*) FROM responses) AS responses`,
      values: [
        ...releaseParameters(releases),
        column((r) => r.predictionId),
        column((r) => r.consumerId),
        column((r) => r.apiKeyId),
        column((r) => r.modelId),
        column((r) => r.modelVersionId),
        column((r) => r.contract?.id ?? null),
        column((r) => r.units),
        column((r) => (r.status === 'OK' && r.contract ? r.units : 0)),
        column((r) => r.contract?.unitPrice ?? '0'),
        column((r) => r.contract?.currency ?? null),
        column((r) => r.status),
        column((r) => r.latencyMs),
        column((r) => r.requestId),
        column((r) => r.reservation?.periodStart ?? null),
        stored.map((r) => r.consumerId),
        stored.map((r) => r.requestId!),
        stored.map((r) => JSON.stringify(r.idempotentResponse)),
      ],
    });
  }
}
