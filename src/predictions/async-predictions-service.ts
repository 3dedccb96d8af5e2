// Asynchronous predictions: predict's call, answered at once (QUEUED) and run in the background by a pg-boss job
// on any replica, through predict's own pipeline (PredictService.prepare/reserve/encode/infer).
//
// Money: the licence is checked and the units reserved at creation, in the transaction that writes the row and
// its job. That lease belongs to the row, not to a server process (quota_leases.server_instance is null), so it
// survives restarts and the metering sweep leaves it alone. The one transaction that ends the prediction
// (SUCCEEDED, FAILED or CANCELED, whichever comes first: it is a conditional update) writes its usage record, which
// bills the lease or gives it back, and its event. A job retried after a crash finds the row ended and does
// nothing, or still RUNNING and runs it again on the same lease: never billed twice, never lost.
//
// Data: the input is sealed with the application secret and deleted when the prediction ends; the outputs are
// sealed and kept PREDICTION_OUTPUT_TTL_HOURS after the end (never shown past it, wiped by the cleanup).
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GraphQLError } from 'graphql';
import type pg from 'pg';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { requesterPrincipal } from '../auth/api-keys.js';
import { requireUserId, type Actor } from '../auth/principal.js';
import { EventType, type EventOutbox } from '../events/outbox.js';
import type { Role, Visibility } from '../generated/prisma/client.js';
import type { JobKind, JobQueue } from '../jobs/job-queue.js';
import { licenceRefusal } from '../licensing/predict-authorizer.js';
import type { BillableContract, MeteringService } from '../metering/metering-service.js';
import { canView, isAdmin } from '../models/model-policy.js';
import type { SecretBox } from '../security/secret-box.js';
import { BadUserInputError, ConflictError, ErrorCode, NotFoundError, RateLimitedError } from '../server/errors.js';
import { assertPageSize, connectionOf, decodeTimeCursor } from '../server/cursors.js';
import { assertUuid } from '../server/ids.js';
import type { Logger } from '../server/logger.js';
import { checkRequestId } from '../server/text.js';
import { parseWebhookUrl } from '../webhooks/url.js';
import type { PredictionOutput } from './output-decoding.js';
import {
  assertServes,
  assertStorableRefs,
  errorCode,
  predictInputHash,
  type CallRecord,
  type PredictInput,
  type PredictService,
} from './predict-service.js';
import type { ServingCatalog } from './serving-catalog.js';

export type AsyncPredictionStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELED';
export type PredictionWebhookEvent = 'COMPLETED' | 'FAILED';

export interface CreatePredictionInput extends Omit<PredictInput, 'readInputs'> {
  webhook?: string | null;
  webhookEvents?: readonly PredictionWebhookEvent[] | null;
}

export interface AsyncPrediction {
  id: string;
  status: AsyncPredictionStatus;
  consumerId: string;
  modelId: string;
  modelVersionId: string;
  contractId: string | null;
  requestId: string | null;
  units: number;
  errorCode: string | null;
  errorMessage: string | null;
  /** Why, when the error says (API_KEY_REVOKED, a licence's state, VERSION_ARCHIVED). */
  errorReason: string | null;
  latencyMs: number | null;
  webhook: string | null;
  webhookEvents: PredictionWebhookEvent[] | null;
  /** The pg-boss job that runs it. */
  jobId: string | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
  dataExpiresAt: Date | null;
  /** The outputs as sealed JSON (read with outputsOf). */
  sealedOutput: string | null;
}

export interface AsyncPredictionFilter {
  status?: AsyncPredictionStatus | null;
  /** A model's slug. */
  model?: string | null;
}

export interface AsyncPredictionsOptions {
  maxQueuedPerUser: number;
  /** Runs at once on this replica; 0 leaves them to the others. */
  workers: number;
  timeoutSeconds: number;
  outputTtlHours: number;
}

const INPUT_LABEL = 'async-prediction-input';
const OUTPUT_LABEL = 'async-prediction-output';
const JOB_NAME = 'async-prediction';
/** Retries of a run that failed for a passing reason (overloaded engine, database unavailable, a killed server). */
const RETRY_LIMIT = 3;
/** How often expired outputs are wiped and predictions whose job ended without them are failed. */
const CLEANUP_INTERVAL_MS = 60_000;

const WEBHOOK_EVENT_TYPES: Record<PredictionWebhookEvent, EventType> = {
  COMPLETED: EventType.PREDICTION_COMPLETED,
  FAILED: EventType.PREDICTION_FAILED,
};

const WEBHOOK_EVENT_OF = new Map(
  Object.entries(WEBHOOK_EVENT_TYPES).map(([event, type]) => [type as string, event as PredictionWebhookEvent]),
);

// unit_price (numeric) arrives as text from node-pg, as prices travel everywhere in metering.
const COLUMNS = `id, status, consumer_id, api_key_id, model_id, model_version_id, contract_id, unit_price, currency,
  request_id, input_hash, units, error_code, error_message, error_reason, latency_ms, webhook, webhook_events, job_id, created_at,
  started_at, completed_at, data_expires_at, output`;

interface Row {
  id: string;
  status: AsyncPredictionStatus;
  consumer_id: string;
  api_key_id: string | null;
  model_id: string;
  model_version_id: string;
  contract_id: string | null;
  unit_price: string;
  currency: string | null;
  request_id: string | null;
  input_hash: string;
  units: number;
  error_code: string | null;
  error_message: string | null;
  error_reason: string | null;
  latency_ms: number | null;
  webhook: string | null;
  webhook_events: string[] | null;
  job_id: string | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  data_expires_at: Date | null;
  output: string | null;
}

function toPrediction(row: Row): AsyncPrediction {
  return {
    id: row.id,
    status: row.status,
    consumerId: row.consumer_id,
    modelId: row.model_id,
    modelVersionId: row.model_version_id,
    contractId: row.contract_id,
    requestId: row.request_id,
    units: row.units,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    errorReason: row.error_reason,
    latencyMs: row.latency_ms,
    webhook: row.webhook,
    webhookEvents: row.webhook_events?.map((type) => WEBHOOK_EVENT_OF.get(type)!) ?? null,
    jobId: row.job_id,
    createdAt: row.created_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    dataExpiresAt: row.data_expires_at,
    sealedOutput: row.output,
  };
}

/** How a prediction ends. */
type Ending =
  | { status: 'SUCCEEDED'; outputs: PredictionOutput[]; latencyMs: number }
  | { status: 'FAILED'; code: string; message: string; reason?: string; latencyMs: number | null }
  | { status: 'CANCELED' };

/** The `reason` a GraphQL error carries in its extensions, if any, for a FAILED ending. */
function reasonOf(error: unknown): { reason?: string } {
  const reason = error instanceof GraphQLError ? error.extensions.reason : undefined;
  return typeof reason === 'string' ? { reason } : {};
}

/** A run that failed for a reason that may pass (retried while retries are left); others fail the prediction. */
function isPassing(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return true;
  const code = error.extensions.code;
  return code === ErrorCode.OVERLOADED || code === ErrorCode.SERVICE_UNAVAILABLE;
}

export class AsyncPredictionsService {
  readonly #job: JobKind;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly catalog: ServingCatalog,
    private readonly predictions: PredictService,
    private readonly metering: MeteringService,
    private readonly jobs: JobQueue,
    private readonly events: EventOutbox,
    private readonly audit: AuditService,
    private readonly secrets: SecretBox,
    private readonly logger: Logger,
    private readonly options: AsyncPredictionsOptions,
  ) {
    this.#job = {
      name: JOB_NAME,
      retryLimit: RETRY_LIMIT,
      retryDelaySeconds: 5,
      retryBackoff: true,
      expireInSeconds: options.timeoutSeconds,
    };
  }

  /** Declares the job queue, works it on this replica (unless workers is 0) and starts the cleanup. */
  async start(): Promise<void> {
    await this.jobs.define(this.#job);
    if (this.options.workers > 0) {
      await this.jobs.work<{ id: string }>(JOB_NAME, this.options.workers, ({ id }, job) =>
        this.#run(id, job.retryCount),
      );
    }
    this.#timer = setInterval(() => void this.cleanup().catch(() => undefined), CLEANUP_INTERVAL_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
  }

  /**
   * Queues a prediction: checks the call as predict does (version, licence, inputs), then in one transaction
   * takes its units, writes the row and its job. A requestId seen before answers with its prediction.
   */
  async create(
    actor: Actor,
    input: CreatePredictionInput,
  ): Promise<{ prediction: AsyncPrediction; warnings: string[] }> {
    const consumerId = requireUserId(actor.principal);
    assertStorableRefs({
      'input.model': input.model,
      'input.version': input.version,
      'input.contractId': input.contractId,
    });
    const requestId = input.requestId == null ? null : checkRequestId(input.requestId, 'input.requestId');
    const webhook = input.webhook == null ? null : parseWebhookUrl(input.webhook, 'input.webhook').href;
    const webhookEvents = this.#webhookEvents(webhook, input.webhookEvents);
    const inputHash = createHash('sha256')
      .update(JSON.stringify([predictInputHash(input), webhook, webhookEvents]))
      .digest('hex');
    if (requestId !== null) {
      const earlier = await this.#byRequestId(this.pool, consumerId, requestId, inputHash);
      if (earlier) return { prediction: earlier, warnings: [] };
    }
    const record: CallRecord = {
      predictionId: randomUUID(),
      consumerId,
      apiKeyId: actor.principal.kind === 'apiKey' ? actor.principal.apiKeyId : null,
      modelId: null,
      modelVersionId: null,
      contract: null,
      units: 0,
      requestId,
    };
    const call = await this.predictions.prepare(actor, input, record);
    const sealedInput = this.secrets.seal(JSON.stringify(input.inputs), INPUT_LABEL);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // One creation per user at a time: the requestId check and the bound on queued work hold under concurrency.
      await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('async-predictions:' || $1, 0))`, [consumerId]);
      if (requestId !== null) {
        const earlier = await this.#byRequestId(client, consumerId, requestId, inputHash);
        if (earlier) {
          await client.query('ROLLBACK');
          return { prediction: earlier, warnings: [] };
        }
      }
      const { rows: counted } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM async_predictions WHERE consumer_id = $1 AND status IN ('QUEUED', 'RUNNING')`,
        [consumerId],
      );
      if (counted[0]!.n >= this.options.maxQueuedPerUser) {
        throw new RateLimitedError(
          `You have ${counted[0]!.n} predictions queued or running (at most ${this.options.maxQueuedPerUser}); wait for one to finish or cancel one`,
          5,
        );
      }
      // The row and its job first, the reservation last: the contract's row lock that the reservation takes (and
      // that predict's grouped reservations wait on) is held only until the COMMIT that follows it.
      const jobId = await this.jobs.send(JOB_NAME, { id: record.predictionId }, { client });
      let payer = call.grant.contract;
      const { rows } = await client.query<Row>(
        `INSERT INTO async_predictions (id, consumer_id, api_key_id, model_id, model_version_id, contract_id,
           unit_price, currency, request_id, input_hash, top_k, units, input, webhook, webhook_events, job_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         RETURNING ${COLUMNS}`,
        [
          record.predictionId,
          consumerId,
          record.apiKeyId,
          call.model.id,
          call.served.version.id,
          payer?.id ?? null,
          payer?.unitPrice ?? '0',
          payer?.currency ?? null,
          requestId,
          inputHash,
          call.topK,
          record.units,
          sealedInput,
          webhook,
          webhookEvents?.map((e) => WEBHOOK_EVENT_TYPES[e]) ?? null,
          jobId,
        ],
      );
      const row = rows[0]!;
      // The contract chosen at prepare stopped being usable: the one chosen again pays (rare: set before its take).
      const setPayer = async (contract: BillableContract | null) => {
        payer = contract;
        await client.query(
          `UPDATE async_predictions SET contract_id = $2, unit_price = $3, currency = $4 WHERE id = $1`,
          [row.id, contract?.id ?? null, contract?.unitPrice ?? '0', contract?.currency ?? null],
        );
        Object.assign(row, { contract_id: contract?.id ?? null });
      };
      const grant = await this.predictions.reserve(
        actor,
        input,
        call,
        record,
        async (contract, units, predictionId) => {
          if (contract.id !== payer?.id) await setPayer(contract);
          await this.metering.reserveHeld(client, contract, units, predictionId);
        },
      );
      if (grant.contract === null && payer !== null) await setPayer(null);
      await client.query('COMMIT');
      this.jobs.wake(JOB_NAME);
      return { prediction: toPrediction(row), warnings: call.warnings };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** One of the caller's predictions (admins: any, audited: it opens its outputs); NOT_FOUND for anyone else's. */
  async find(actor: Actor, id: string): Promise<AsyncPrediction> {
    const userId = requireUserId(actor.principal);
    assertUuid(id, 'id');
    const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM async_predictions WHERE id = $1`, [id]);
    const row = rows[0];
    if (!row || (row.consumer_id !== userId && !isAdmin(actor.principal))) throw new NotFoundError('Prediction');
    if (row.consumer_id !== userId) {
      await this.audit.record(actor, {
        action: AuditAction.ADMIN_READ,
        targetType: 'AsyncPrediction',
        targetId: id,
        details: { read: 'prediction', owner: row.consumer_id },
      });
    }
    return toPrediction(row);
  }

  /** The caller's predictions, newest first, `first` at a time after the cursor `after`. */
  async list(actor: Actor, filter: AsyncPredictionFilter | null | undefined, first: number, after: string | null) {
    const userId = requireUserId(actor.principal);
    assertPageSize(first);
    if (filter?.model != null) assertStorableRefs({ 'filter.model': filter.model });
    const cursor = after == null ? null : decodeTimeCursor(after);
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM async_predictions
       WHERE consumer_id = $1
         AND ($2::"AsyncPredictionStatus" IS NULL OR status = $2)
         AND ($3::text IS NULL OR model_id = (SELECT id FROM models WHERE slug = $3))
         AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
       ORDER BY created_at DESC, id DESC
       LIMIT $6`,
      [userId, filter?.status ?? null, filter?.model ?? null, cursor?.createdAt ?? null, cursor?.id ?? null, first + 1],
    );
    return connectionOf(rows.map(toPrediction), first);
  }

  /**
   * Cancels a QUEUED or RUNNING prediction at once: its units go back with its usage record (status CANCELED), a
   * run in progress is discarded when it ends. CONFLICT when it already ended.
   */
  async cancel(actor: Actor, id: string): Promise<AsyncPrediction> {
    const found = await this.find(actor, id);
    const canceled = await this.#end(id, { status: 'CANCELED' }, ['QUEUED', 'RUNNING']);
    if (!canceled) {
      const { status } = await this.find(actor, id);
      throw new ConflictError(`The prediction already ended (${status})`);
    }
    // Only saves a worker the look: a job that runs anyway finds the prediction ended.
    if (found.status === 'QUEUED' && found.jobId) await this.jobs.cancel(JOB_NAME, found.jobId).catch(() => undefined);
    return canceled;
  }

  /** The outputs of a SUCCEEDED prediction, until they expire. */
  outputsOf(prediction: AsyncPrediction): PredictionOutput[] | null {
    if (prediction.sealedOutput === null || !prediction.dataExpiresAt || prediction.dataExpiresAt <= new Date())
      return null;
    return JSON.parse(this.secrets.open(prediction.sealedOutput, OUTPUT_LABEL)) as PredictionOutput[];
  }

  /**
   * Wipes expired outputs, and fails the predictions whose job ended without ending them (its retries ran out,
   * the last attempt killed with its server), giving their units back.
   */
  async cleanup(): Promise<void> {
    await this.pool.query(
      'UPDATE async_predictions SET output = NULL WHERE output IS NOT NULL AND data_expires_at <= now()',
    );
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT p.id FROM async_predictions p
       WHERE p.status IN ('QUEUED', 'RUNNING') AND NOT EXISTS (
         SELECT 1 FROM pgboss.job j WHERE j.name = $1 AND j.id = p.job_id AND j.state IN ('created', 'retry', 'active'))`,
      [JOB_NAME],
    );
    for (const { id } of rows) {
      await this.#end(
        id,
        {
          status: 'FAILED',
          code: ErrorCode.INTERNAL_SERVER_ERROR,
          message: 'The prediction could not be run; it was not billed',
          latencyMs: null,
        },
        ['QUEUED', 'RUNNING'],
      );
    }
  }

  #webhookEvents(
    webhook: string | null,
    events: readonly PredictionWebhookEvent[] | null | undefined,
  ): PredictionWebhookEvent[] | null {
    if (events == null) return webhook === null ? null : ['COMPLETED', 'FAILED'];
    if (webhook === null) throw new BadUserInputError('webhookEvents needs a webhook', 'input.webhookEvents');
    if (events.length === 0) {
      throw new BadUserInputError('Name at least one event, or leave webhookEvents out for all', 'input.webhookEvents');
    }
    return (['COMPLETED', 'FAILED'] as const).filter((e) => events.includes(e));
  }

  /** The caller's prediction under this requestId (CONFLICT when it was made with another input), else null. */
  async #byRequestId(
    db: pg.Pool | pg.PoolClient,
    consumerId: string,
    requestId: string,
    inputHash: string,
  ): Promise<AsyncPrediction | null> {
    const { rows } = await db.query<Row>(
      `SELECT ${COLUMNS} FROM async_predictions WHERE consumer_id = $1 AND request_id = $2`,
      [consumerId, requestId],
    );
    if (!rows[0]) return null;
    if (rows[0].input_hash !== inputHash) throw new ConflictError('requestId was already used with a different input');
    return toPrediction(rows[0]);
  }

  /** A job: runs the prediction unless it already ended (a retry after its end, or a cancel). */
  async #run(id: string, retryCount: number): Promise<void> {
    const { rows } = await this.pool.query<{
      consumer_id: string;
      api_key_id: string | null;
      model_version_id: string;
      input: string;
      top_k: number;
    }>(
      `UPDATE async_predictions SET status = 'RUNNING', started_at = coalesce(started_at, now())
       WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')
       RETURNING consumer_id, api_key_id, model_version_id, input, top_k`,
      [id],
    );
    const row = rows[0];
    if (!row) return;
    const started = performance.now();
    let ending: Ending;
    try {
      const served = await this.catalog.servedById(row.model_version_id);
      // Archived, its licence ended or its model hidden while it was queued: refused as predict would refuse it now.
      assertServes(served.version);
      const refusal = await this.#licenceRefusal(this.pool, id);
      if (refusal) throw refusal;
      // Created with an API key: FORBIDDEN (API_KEY_REVOKED) once that key could no longer create it.
      await requesterPrincipal(this.pool, row.consumer_id, row.api_key_id, 'prediction');
      const instances: unknown = JSON.parse(this.secrets.open(row.input, INPUT_LABEL));
      const encoded = await this.predictions.encode(served.signature, instances, undefined, []);
      const outputs = await this.predictions.infer(served, encoded, row.top_k);
      ending = { status: 'SUCCEEDED', outputs, latencyMs: performance.now() - started };
    } catch (error) {
      // Thrown: pg-boss retries the job with backoff; the prediction stays RUNNING on its lease.
      if (isPassing(error) && retryCount < RETRY_LIMIT) throw error;
      if (!(error instanceof GraphQLError)) this.logger.error({ err: error, prediction: id }, 'a prediction failed');
      ending = {
        status: 'FAILED',
        code: errorCode(error),
        message: error instanceof GraphQLError ? error.message : 'The prediction failed; it was not billed',
        ...reasonOf(error),
        latencyMs: performance.now() - started,
      };
    }
    await this.#end(id, ending, ['RUNNING']);
  }

  /**
   * Why the prediction may no longer run, as predict would refuse it now: NOT_FOUND when its model is hidden from
   * its caller, FORBIDDEN (with the reason) when the contract that holds its units is no longer ACTIVE or has
   * expired. Null when it may run.
   */
  async #licenceRefusal(db: pg.Pool | pg.PoolClient, id: string): Promise<GraphQLError | null> {
    const { rows } = await db.query<{
      role: Role;
      consumer_id: string;
      owner_id: string;
      visibility: Visibility;
      refusal: 'SUSPENDED' | 'REVOKED' | 'PENDING' | 'EXPIRED' | 'NO_CONTRACT' | null;
    }>(
      `SELECT u.role, p.consumer_id, m.owner_id, m.visibility,
         CASE WHEN c.id IS NULL THEN NULL
              WHEN c.status IN ('SUSPENDED', 'REVOKED', 'PENDING') THEN c.status::text
              WHEN c.status <> 'ACTIVE' THEN 'NO_CONTRACT'
              WHEN c.expires_at <= now() THEN 'EXPIRED' END AS refusal
       FROM async_predictions p JOIN users u ON u.id = p.consumer_id JOIN models m ON m.id = p.model_id
         LEFT JOIN contracts c ON c.id = p.contract_id
       WHERE p.id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return null;
    const principal = { kind: 'user' as const, userId: row.consumer_id, role: row.role, sessionId: '' };
    if (!canView(principal, { ownerId: row.owner_id, visibility: row.visibility })) return new NotFoundError('Model');
    return row.refusal === null ? null : licenceRefusal(row.refusal);
  }

  /**
   * Ends a prediction that is in one of `from`, in one transaction: its row, its usage record (billing or giving
   * back its lease), and its event. Null when it was not in `from` (another ending came first).
   */
  async #end(id: string, ending: Ending, from: AsyncPredictionStatus[]): Promise<AsyncPrediction | null> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      if (ending.status === 'SUCCEEDED') {
        // The licence may have ended while it ran: then it is neither billed nor answered.
        const refusal = await this.#licenceRefusal(client, id);
        if (refusal) {
          ending = {
            status: 'FAILED',
            code: errorCode(refusal),
            message: refusal.message,
            ...reasonOf(refusal),
            latencyMs: ending.latencyMs,
          };
        }
      }
      const sealedOutput =
        ending.status === 'SUCCEEDED' ? this.secrets.seal(JSON.stringify(ending.outputs), OUTPUT_LABEL) : null;
      const update = (
        status: AsyncPredictionStatus,
        output: string | null,
        code: string | null,
        message: string | null,
        reason: string | null,
        when: AsyncPredictionStatus[],
      ) =>
        client.query<Row & { slug: string; version: string }>(
          `UPDATE async_predictions p SET status = $2, completed_at = now(), input = NULL, output = $3,
             error_code = $4, error_message = $5, error_reason = $9, latency_ms = coalesce($6::float8, p.latency_ms),
             data_expires_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() + make_interval(hours => $7) END
           FROM models m, model_versions v
           WHERE p.id = $1 AND p.status = ANY($8::"AsyncPredictionStatus"[])
             AND m.id = p.model_id AND v.id = p.model_version_id
           RETURNING p.*, m.slug, v.version`,
          [
            id,
            status,
            output,
            code,
            message,
            ending.status === 'CANCELED' ? null : ending.latencyMs,
            this.options.outputTtlHours,
            when,
            reason,
          ],
        );
      const failure = ending.status === 'FAILED' ? ending : null;
      let { rows } = await update(
        ending.status,
        sealedOutput,
        failure?.code ?? null,
        failure?.message ?? null,
        failure?.reason ?? null,
        from,
      );
      let row = rows[0];
      if (!row) {
        await client.query('ROLLBACK');
        return null;
      }
      const kept = await this.metering.recordHeld(client, {
        predictionId: id,
        consumerId: row.consumer_id,
        apiKeyId: row.api_key_id,
        modelId: row.model_id,
        modelVersionId: row.model_version_id,
        contract: row.contract_id
          ? {
              id: row.contract_id,
              unitPrice: row.unit_price,
              currency: row.currency ?? '',
              rateLimitPerMinute: null,
              period: 'MONTH',
            }
          : null,
        units: row.units,
        status: ending.status === 'SUCCEEDED' ? 'OK' : ending.status === 'FAILED' ? ending.code : 'CANCELED',
        latencyMs: row.latency_ms ?? 0,
        requestId: row.request_id,
        idempotentResponse: undefined,
      });
      if (!kept) {
        // Its lease was gone (never expected: nothing else ends it): not billed, so not answered either.
        const message = 'The prediction could not be billed, so its outputs are withheld; it was not billed';
        ({ rows } = await update('FAILED', null, ErrorCode.SERVICE_UNAVAILABLE, message, null, [ending.status]));
        row = rows[0]!;
      }
      if (row.status !== 'CANCELED') {
        await this.events.emit(client, [
          {
            type: row.status === 'SUCCEEDED' ? EventType.PREDICTION_COMPLETED : EventType.PREDICTION_FAILED,
            accountId: row.consumer_id,
            data: {
              id,
              status: row.status,
              model: row.slug,
              version: row.version,
              error: row.error_code
                ? { code: row.error_code, message: row.error_message, reason: row.error_reason ?? undefined }
                : null,
              metrics: row.latency_ms === null ? null : { latencyMs: row.latency_ms, units: row.units },
              createdAt: row.created_at.toISOString(),
              completedAt: row.completed_at!.toISOString(),
              webhook: row.webhook,
              webhookEvents: row.webhook_events,
            },
          },
        ]);
      }
      await client.query('COMMIT');
      if (row.status !== 'CANCELED') this.events.wake();
      return toPrediction(row);
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}
