// Batch predictions: a version run over one of its requester's JSONL data sets (each row one instance, as predict
// takes it), in the background on the job queue, through the same path predict serves (the serving catalog, the
// input encoder, the batching inference engine). One job runs one chunk of BATCH_CHUNK_SIZE rows.
//
// Exactly once per row: a chunk's results (sealed with the application secret), its usage record, the batch's
// progress and the next chunk's job are written in ONE transaction, which first checks (under the batch row's
// lock) that the chunk is still the next one. A server killed mid-chunk commits nothing of it: its job is failed
// by the next server to start (or times out after BATCH_CHUNK_TIMEOUT_SECONDS) and runs again on any server, from
// the same place in the data set; the dead run's reserved units are a quota lease of a dead server instance, given
// back by the metering sweep. A chunk run twice (a timed-out job that was only slow) commits once; the other run's
// reservation is given back. A batch whose chunk job ended for good without ending it (its attempts ran out) is
// ended FAILED by a periodic check (endStranded).
//
// Billing: one unit per row that ran, reserved per chunk before it runs. Rows whose input the model refuses get
// their error in the results and are not billed. A chunk that cannot reserve (QUOTA_EXCEEDED) ends the batch
// with that status; what ran before stays billed and downloadable.
//
// Sharing the engine: this replica runs at most BATCH_MAX_CONCURRENT_CHUNKS chunks at once (over all batches),
// so synchronous predict calls keep most of the inference workers.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Writable } from 'node:stream';
import { GraphQLError } from 'graphql';
import type pg from 'pg';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { requesterPrincipal } from '../auth/api-keys.js';
import { requireUserId, type Actor } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { ServerInstance } from '../db/server-instance.js';
import { datasetChunks, type DatasetLimits, type DatasetRow } from '../evaluation/dataset-format.js';
import type { DatasetsService } from '../evaluation/datasets-service.js';
import { imageSlices, isOverloaded, overloadBackoffMs } from '../evaluation/evaluations-service.js';
import { EventType, type EventOutbox } from '../events/outbox.js';
import type { BatchPrediction, BatchPredictionStatus, Prisma as PrismaTypes } from '../generated/prisma/client.js';
import type { InferenceEngine, TensorInput } from '../inference/engine.js';
import type { JobHandlerContext, JobKind, JobQueue } from '../jobs/job-queue.js';
import type { LicenceAuthorizer } from '../licensing/predict-authorizer.js';
import { ContractInactiveError, type MeteringService } from '../metering/metering-service.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { canView, isAdmin } from '../models/model-policy.js';
import { isNamed, outputSizeOf, type Signature } from '../models/signature.js';
import { PreprocessingOverloadedError } from '../preprocessing/preprocessing-pool.js';
import type { SecretBox } from '../security/secret-box.js';
import { connectionOf, newestFirstPage } from '../server/cursors.js';
import {
  BadUserInputError,
  ConflictError,
  ErrorCode,
  ForbiddenError,
  NotFoundError,
  RateLimitedError,
} from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import type { Logger } from '../server/logger.js';
import { parseWebhookUrl } from '../webhooks/url.js';
import type { InputEncoder } from './input-encoding.js';
import { decodeNamedOutputs, decodeOutputs, type PredictionOutput } from './output-decoding.js';
import {
  assertStorableRefs,
  errorCode,
  inferenceCallError,
  recordFailedCall,
  type CallRecord,
} from './predict-service.js';
import type { ServingCatalog } from './serving-catalog.js';

export interface BatchLimits {
  chunkSize: number;
  maxConcurrentChunks: number;
  chunkTimeoutSeconds: number;
  resultsTtlDays: number;
  maxActivePerUser: number;
}

export interface BatchPredictionError {
  code: string;
  message: string;
  /** Why, when the error names it (API_KEY_REVOKED, VERSION_ARCHIVED). */
  reason?: string;
}

export interface BatchPredictionFilter {
  status?: BatchPredictionStatus | null;
  model?: string | null;
}

/** One line of the results: a row's output, or why its input was refused. */
type ResultLine = { row: number; output: PredictionOutput } | { row: number; error: BatchPredictionError };

interface ChunkJob {
  batchId: string;
  chunk: number;
}

const ACTIVE: BatchPredictionStatus[] = ['QUEUED', 'RUNNING'];
const MAX_TOP_K = 100;
/** Advisory lock class serialising a user's active-batch count with the insert (7275001..3 are taken). */
const START_LOCK_CLASS = 7275004;
/** How long a chunk waits out its contract's rate limit, and overloads (engine, preprocessing), before its job retries. */
const MAX_WAIT_PER_CHUNK_MS = 30_000;
const MAX_OVERLOADS_PER_CHUNK = 5;

const CHUNK_JOB_RETRIES = 10;
/** How often results past their expiry whose job did not delete them (it failed for good) are deleted. */
const EXPIRED_RESULTS_SWEEP_MS = 15 * 60_000;
/** How often this replica looks for batches whose chunk job ended without ending them. */
const STRANDED_CHECK_INTERVAL_MS = 60_000;
/** Errors that are the moment's, not the batch's: its chunk's job runs again (with backoff). */
const RETRIED_CODES = new Set<string>([ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.OVERLOADED]);

/** Ends a chunk's run without an outcome: the batch ended meanwhile, or the chunk was committed by another run. */
class ChunkSuperseded extends Error {}

export const resultsPath = (id: string) => `/v1/batch-predictions/${id}/results.jsonl`;

export class BatchPredictionsService {
  readonly #chunkJob: JobKind;
  readonly #expiryJob: JobKind = {
    name: 'batch-prediction-results-expiry',
    retryLimit: 10,
    retryDelaySeconds: 60,
    retryBackoff: true,
    expireInSeconds: 300,
  };
  #sweepTimer: NodeJS.Timeout | undefined;
  #strandedCheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly catalog: ServingCatalog,
    private readonly artifacts: ArtifactService,
    private readonly engine: InferenceEngine,
    private readonly encoder: InputEncoder,
    private readonly authorizer: LicenceAuthorizer,
    private readonly metering: MeteringService,
    private readonly datasets: DatasetsService,
    private readonly audit: AuditService,
    private readonly jobs: JobQueue,
    private readonly events: EventOutbox,
    private readonly secrets: SecretBox,
    private readonly instance: ServerInstance,
    private readonly logger: Logger,
    private readonly limits: BatchLimits & DatasetLimits,
  ) {
    this.#chunkJob = {
      name: 'batch-prediction-chunk',
      retryLimit: CHUNK_JOB_RETRIES,
      retryDelaySeconds: 1,
      retryBackoff: true,
      expireInSeconds: limits.chunkTimeoutSeconds,
    };
  }

  /** Declares the queues and works them on this replica. */
  async start(): Promise<void> {
    await this.jobs.define(this.#chunkJob);
    await this.jobs.define(this.#expiryJob);
    await this.failJobsOfStoppedServers();
    await this.jobs.work<ChunkJob>(this.#chunkJob.name, this.limits.maxConcurrentChunks, (data, job) =>
      this.#runChunkJob(data, job),
    );
    await this.jobs.work<{ batchId: string }>(this.#expiryJob.name, 1, ({ batchId }) => this.#deleteResults(batchId));
    this.#sweepTimer = setInterval(
      () =>
        void this.deleteExpiredResults().catch((error: unknown) =>
          this.logger.error({ err: error }, 'deleting expired batch results failed'),
        ),
      EXPIRED_RESULTS_SWEEP_MS,
    );
    this.#strandedCheck = setInterval(
      () =>
        void this.endStranded().catch((error: unknown) =>
          this.logger.error({ err: error }, 'ending stranded batches failed'),
        ),
      STRANDED_CHECK_INTERVAL_MS,
    );
    this.#strandedCheck.unref();
  }

  close(): void {
    clearInterval(this.#sweepTimer);
    clearInterval(this.#strandedCheck);
  }

  /**
   * Deletes the results of batches past their expiry that their expiry job left (its retries ran out); safe on
   * every replica at once. Resolves with the count of batches looked at (at most 500 a pass).
   */
  async deleteExpiredResults(): Promise<number> {
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM batch_predictions WHERE results_expire_at <= now() AND results_deleted_at IS NULL
       ORDER BY results_expire_at LIMIT 500`,
    );
    for (const { id } of rows) await this.#deleteResults(id);
    return rows.length;
  }

  /**
   * Ends FAILED the active batches whose chunk job ended without ending them (its last attempt killed with its
   * server or timed out, or failing before it could end the batch): nothing else would, and such a batch would
   * count against its requester's active batches for ever. Its rows that ran stay billed and downloadable.
   */
  async endStranded(): Promise<void> {
    const { rows } = await this.pool.query<{ id: string; chunk_job_id: string }>(
      `SELECT b.id, b.chunk_job_id FROM batch_predictions b
       WHERE b.status IN ('QUEUED', 'RUNNING') AND b.chunk_job_id IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM pgboss.job j
         WHERE j.name = $1 AND j.id = b.chunk_job_id AND j.state IN ('created', 'retry', 'active'))`,
      [this.#chunkJob.name],
    );
    const failure: BatchPredictionError = {
      code: ErrorCode.INTERNAL_SERVER_ERROR,
      message: 'The batch prediction failed',
    };
    for (const { id, chunk_job_id } of rows) {
      const ended = await this.#inTransaction(async (client) => {
        // Still on that job under the row's lock: a run that committed its chunk meanwhile moved it on.
        const { rowCount } = await client.query(
          'SELECT 1 FROM batch_predictions WHERE id = $1 AND chunk_job_id = $2 FOR UPDATE',
          [id, chunk_job_id],
        );
        return rowCount ? this.#endIn(client, id, 'FAILED', failure) : null;
      });
      if (ended) this.logger.error({ batch: id, job: chunk_job_id }, 'a batch prediction whose chunk job ended failed');
    }
    if (rows.length) this.events.wake();
  }

  /**
   * Fails the chunk jobs that servers which stopped were running, so that they run again now (after the job's
   * retry delay) rather than when their timeout passes; what such a chunk did was never committed.
   */
  async failJobsOfStoppedServers(): Promise<void> {
    const { rows } = await this.pool.query<{ chunk_job_id: string }>(
      `SELECT chunk_job_id FROM batch_predictions
       WHERE status IN ('QUEUED', 'RUNNING') AND chunk_job_id IS NOT NULL
         AND chunk_server_instance NOT IN (SELECT instance FROM mm_live_server_instances())`,
    );
    for (const { chunk_job_id } of rows) {
      await this.jobs.fail(this.#chunkJob.name, chunk_job_id, 'the server running the chunk stopped');
    }
    if (rows.length) this.logger.info({ jobs: rows.length }, 'failed the batch chunk jobs of stopped servers');
  }

  /** Starts a batch over one of the caller's data sets; answers at once (QUEUED). */
  async create(
    actor: Actor,
    input: {
      model: string;
      version?: string | null;
      dataset: string;
      webhook?: string | null;
      contractId?: string | null;
      topK?: number | null;
    },
  ): Promise<BatchPrediction> {
    const requesterId = requireUserId(actor.principal);
    assertStorableRefs({
      'input.model': input.model,
      'input.version': input.version,
      'input.contractId': input.contractId,
    });
    if (input.contractId != null) assertUuid(input.contractId, 'input.contractId');
    const topK = input.topK ?? 3;
    if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) {
      throw new BadUserInputError(`topK must be 1 to ${MAX_TOP_K}`, 'input.topK');
    }
    const webhook = input.webhook == null ? null : parseWebhookUrl(input.webhook, 'input.webhook').href;
    // Served as predict serves it: a licensee naming no version (or its contract's alias) gets its pinned version.
    const { model, served, contractId } = await this.catalog.servedFor(actor, input, 'PREDICT');
    const { version } = served;
    if (version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    // The licence is checked now, as predict checks it (each chunk checks it again before it is billed).
    await this.authorizer.authorize(actor, model, version, contractId);
    const dataset = await this.datasets.find(actor, input.dataset, 'input.dataset');
    if (dataset.format !== 'JSONL') {
      throw new BadUserInputError('Batch predictions run JSONL data sets ({"input": …} a line)', 'input.dataset');
    }
    const id = randomUUID();
    await this.#inTransaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [START_LOCK_CLASS, requesterId]);
      const { rows } = await client.query<{ active: number }>(
        `SELECT count(*)::int AS active FROM batch_predictions WHERE requester_id = $1 AND status IN ('QUEUED', 'RUNNING')`,
        [requesterId],
      );
      if (rows[0]!.active >= this.limits.maxActivePerUser) {
        throw new RateLimitedError(
          `You have ${rows[0]!.active} batch predictions running (at most ${this.limits.maxActivePerUser}); wait for one to finish or cancel one`,
          30,
        );
      }
      const jobId = await this.jobs.send(this.#chunkJob.name, { batchId: id, chunk: 0 } satisfies ChunkJob, { client });
      await client.query(
        `INSERT INTO batch_predictions (id, requester_id, api_key_id, model_id, version_id, dataset_id, contract_id,
           top_k, webhook, total, chunk_job_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          id,
          requesterId,
          actor.principal.kind === 'apiKey' ? actor.principal.apiKeyId : null,
          model.id,
          version.id,
          dataset.id,
          contractId,
          topK,
          webhook,
          dataset.rows,
          jobId,
        ],
      );
      await this.audit.recordOn(client, actor, {
        action: AuditAction.BATCH_PREDICTION_STARTED,
        targetType: 'BatchPrediction',
        targetId: id,
        details: { version: version.id, datasetSha256: dataset.sha256, rows: dataset.rows },
      });
    });
    this.jobs.wake(this.#chunkJob.name);
    return this.prisma.batchPrediction.findUniqueOrThrow({ where: { id } });
  }

  /** A batch its requester (or an admin) may read, or NOT_FOUND; an admin's read of another's is audited. */
  async find(actor: Actor, id: string, read = 'batch prediction'): Promise<BatchPrediction> {
    const { batch, mine } = await this.#visible(actor, id);
    if (!mine) {
      await this.audit.record(actor, {
        action: AuditAction.ADMIN_READ,
        targetType: 'BatchPrediction',
        targetId: id,
        details: { read, owner: batch.requesterId },
      });
    }
    return batch;
  }

  async #visible(actor: Actor, id: string): Promise<{ batch: BatchPrediction; mine: boolean }> {
    assertUuid(id, 'id');
    const batch = await this.prisma.batchPrediction.findUnique({ where: { id } });
    const { principal } = actor;
    const mine = principal.kind !== 'anonymous' && batch?.requesterId === principal.userId;
    if (!batch || !(mine || isAdmin(principal))) throw new NotFoundError('BatchPrediction');
    return { batch, mine };
  }

  /** The caller's batches, newest first. */
  async mine(actor: Actor, filter: BatchPredictionFilter | null | undefined, first: number, after?: string | null) {
    const requesterId = requireUserId(actor.principal);
    const afterCursor = newestFirstPage(first, after);
    const conditions: PrismaTypes.BatchPredictionWhereInput[] = [{ requesterId }];
    if (filter?.status) conditions.push({ status: filter.status });
    if (filter?.model != null) {
      assertStorableRefs({ 'filter.model': filter.model });
      const model = await this.prisma.model.findUnique({ where: { slug: filter.model }, select: { id: true } });
      if (!model) return connectionOf([], first);
      conditions.push({ modelId: model.id });
    }
    const rows = await this.prisma.batchPrediction.findMany({
      where: { AND: [...conditions, ...afterCursor] },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: first + 1,
    });
    return connectionOf(rows, first);
  }

  /** Cancels a QUEUED or RUNNING batch: it stops before its next chunk (a chunk in flight is not kept). */
  async cancel(actor: Actor, id: string): Promise<BatchPrediction> {
    const { batch } = await this.#visible(actor, id);
    await this.#inTransaction(async (client) => {
      const ended = await this.#endIn(client, id, 'CANCELED', null);
      if (!ended) throw new ConflictError(`The batch prediction already ended (${batch.status})`);
      await this.audit.recordOn(client, actor, {
        action: AuditAction.BATCH_PREDICTION_CANCELED,
        targetType: 'BatchPrediction',
        targetId: id,
        details: ended,
      });
    });
    this.events.wake();
    return this.prisma.batchPrediction.findUniqueOrThrow({ where: { id } });
  }

  /**
   * Writes a batch's results to `out`, a line per row done so far in row order, a chunk at a time (read and
   * opened one by one, waiting for `out` to drain). NOT_FOUND for a batch the caller may not read.
   */
  async writeResults(actor: Actor, id: string, out: Writable, ready: () => void): Promise<void> {
    const batch = await this.find(actor, id, 'batch prediction results');
    // Expired is expired, whether or not the deletion ran yet.
    if (batch.resultsExpireAt && batch.resultsExpireAt <= new Date()) {
      throw new GraphQLError(
        `The results expired at ${batch.resultsExpireAt.toISOString()} (kept ${this.limits.resultsTtlDays} days)`,
        { extensions: { code: ErrorCode.NOT_FOUND, reason: 'RESULTS_EXPIRED', http: { status: 404 } } },
      );
    }
    ready();
    for (let chunk = 0; ; chunk++) {
      const { rows } = await this.pool.query<{ results: string }>(
        'SELECT results FROM batch_prediction_chunks WHERE batch_id = $1 AND chunk = $2',
        [id, chunk],
      );
      if (rows.length === 0 || out.destroyed) return;
      if (!out.write(this.secrets.open(rows[0]!.results, sealLabel(id, chunk))) && !(await drained(out))) return;
    }
  }

  // ---- running chunks ----

  async #runChunkJob(job: ChunkJob, { id: jobId, retryCount }: JobHandlerContext): Promise<void> {
    // Which server runs the chunk, for the next server to start should this one die.
    await this.pool.query(
      `UPDATE batch_predictions SET chunk_job_id = $2, chunk_server_instance = $3
       WHERE id = $1 AND chunks_done = $4 AND status IN ('QUEUED', 'RUNNING')`,
      [job.batchId, jobId, this.instance.id, job.chunk],
    );
    try {
      await this.#runChunk(job);
    } catch (error) {
      if (error instanceof ChunkSuperseded) return;
      // The batch's own failures (the model broke, the licence went) end it; others (the database away) are the
      // job's, retried, until its last attempt ends the batch.
      const own = error instanceof GraphQLError && !RETRIED_CODES.has(errorCode(error));
      if (!own && retryCount < CHUNK_JOB_RETRIES) throw error;
      if (!own) this.logger.error({ err: error, batch: job.batchId }, 'a batch prediction failed');
      const reason = own ? error.extensions.reason : undefined;
      const failure: BatchPredictionError = {
        code: errorCode(error),
        message: own ? error.message : 'The batch prediction failed',
        ...(typeof reason === 'string' ? { reason } : {}),
      };
      const status = failure.code === ErrorCode.QUOTA_EXCEEDED ? 'QUOTA_EXCEEDED' : 'FAILED';
      await this.#inTransaction(async (client) => {
        if (status === 'QUOTA_EXCEEDED') {
          const { rows } = await client.query<{ chunks_done: number; leased: boolean }>(
            `SELECT chunks_done, EXISTS (SELECT 1 FROM quota_leases WHERE prediction_id = ANY (chunk_lease_ids)) AS leased
             FROM batch_predictions WHERE id = $1 FOR UPDATE`,
            [job.batchId],
          );
          // Another run of the chunk committed it meanwhile (with the units this run could not take).
          if (rows[0]?.chunks_done !== job.chunk) return;
          // A duplicate run (its job timed out, or was failed by a stopping server, while the first run went on)
          // finds the quota taken by that run's lease: not the batch's end; the job runs again later.
          if (rows[0].leased) throw new Error('another run of this chunk holds its units', { cause: error });
        }
        await this.#endIn(client, job.batchId, status, failure);
      });
      this.events.wake();
    }
  }

  async #runChunk({ batchId, chunk }: ChunkJob): Promise<void> {
    const batch = await this.prisma.batchPrediction.findUnique({ where: { id: batchId } });
    // Ended (canceled, failed), or this chunk was committed by an earlier run of its job.
    if (!batch || !ACTIVE.includes(batch.status) || batch.chunksDone !== chunk) return;
    if (batch.datasetId === null) throw new NotFoundError('Dataset (it was deleted while the batch ran)');
    const actor = await this.#requesterActor(batch);
    const model = await this.prisma.model.findUniqueOrThrow({ where: { id: batch.modelId } });
    const version = await this.catalog.versionById(batch.versionId);
    // As predict does on every call: a model made private meanwhile, or a version archived, no longer serves.
    const current = await this.catalog.resolve(model.slug, version.version);
    if (!current?.served || !canView(actor.principal, current.model)) throw new NotFoundError('Model');
    if (current.served.version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    const { signature, sha256 } = current.served;

    // No more rows than one predict call's output values allow (publishing made sure one row fits).
    const perChunk = Math.min(
      this.limits.chunkSize,
      Math.max(1, Math.floor(this.encoder.maxOutputValues / outputSizeOf(signature))),
    );
    const rows = await this.#rowsAt(batch, perChunk);
    const firstRow = batch.processed;
    const started = performance.now();
    const { slices, errors } = await this.#encodeRows(signature, rows);
    const units = slices.reduce((sum, slice) => sum + slice.rows.length, 0);

    const outputs = new Map<number, PredictionOutput>();
    let record: CallRecord | null = null;
    if (units > 0) {
      record = await this.#reserve(actor, batch, model, version, units);
      try {
        await this.#predict(signature, sha256, batch.topK, slices, outputs);
      } catch (error) {
        await recordFailedCall(this.metering, record, error, started);
        throw error;
      }
    }
    const lines = rows.map((_, i): ResultLine => {
      const output = outputs.get(i);
      return output ? { row: firstRow + i, output } : { row: firstRow + i, error: errors.get(i)! };
    });
    await this.#commitChunk(batch, chunk, lines, rows.at(-1)!, errors.size, record, started);
  }

  /** The requester, as the jobs act for them (their role decides what they may see, as in a request). */
  async #requesterActor(batch: BatchPrediction): Promise<Actor> {
    const principal = await requesterPrincipal(this.pool, batch.requesterId, batch.apiKeyId, 'batch');
    if (principal === null) throw new ChunkSuperseded();
    return { principal, ip: '', requestId: `batch:${batch.id}` };
  }

  /** The chunk's rows: up to `count` from where the last committed chunk stopped, read from there on. */
  async #rowsAt(batch: BatchPrediction, count: number): Promise<DatasetRow[]> {
    const dataset = await this.prisma.dataset.findUnique({ where: { id: batch.datasetId! } });
    if (!dataset) throw new NotFoundError('Dataset (it was deleted while the batch ran)');
    const bytes = await this.datasets.linesFrom(dataset, batch.nextOffset, count);
    // Offsets are from where the bytes read start (a byte-order mark there is skipped, as at the data set's start).
    const rows = datasetChunks(bytes, 'JSONL', this.limits, count, [], { offset: 0, line: batch.nextLine });
    const { value } = await rows.next();
    await rows.return(undefined);
    if (!value || value.length === 0) throw new Error(`batch ${batch.id}: no rows at offset ${batch.nextOffset}`);
    return (value as DatasetRow[]).map((row) => ({ ...row, end: batch.nextOffset + row.end }));
  }

  /**
   * The rows' inputs as predict encodes them, in slices within one call's image budgets; a row whose input the
   * encoder refuses is left out with its error (then the others are encoded again).
   */
  async #encodeRows(signature: Signature, rows: DatasetRow[]) {
    const errors = new Map<number, BatchPredictionError>();
    const slices: { rows: number[]; tensors: TensorInput | TensorInput[] }[] = [];
    const indexed = rows.map((row, index) => ({ ...row, index }));
    const groups =
      !isNamed(signature) && signature.input.preprocessing.kind === 'image'
        ? imageSlices(indexed, this.encoder.imageLimits)
        : [indexed];
    for (const group of groups) {
      let pending = group.map((row) => row.index);
      for (let overloads = 0; pending.length > 0;) {
        const inputs = pending.map((i) => rows[i]!.input);
        const limits = { maxInstances: this.limits.chunkSize };
        try {
          const tensors = isNamed(signature)
            ? await this.encoder.encodeNamed(signature, inputs, 'input', limits)
            : await this.encoder.encode(signature, inputs, 'input', limits);
          slices.push({ rows: pending, tensors });
          break;
        } catch (error) {
          if (error instanceof PreprocessingOverloadedError) {
            // Not the batch's failure: its job runs the chunk again later.
            if (overloads > MAX_OVERLOADS_PER_CHUNK) {
              throw new Error('the preprocessing stayed overloaded', { cause: error });
            }
            await sleep(overloadBackoffMs(overloads++));
            continue;
          }
          if (!(error instanceof BadUserInputError)) throw error;
          const at = /^input\[(\d+)\](\S*): /.exec(error.message);
          const guilty = at ? [pending[Number(at[1])]!] : pending;
          const message = at ? `input${at[2]}: ${error.message.slice(at[0].length)}` : error.message;
          for (const i of guilty) errors.set(i, { code: ErrorCode.BAD_USER_INPUT, message });
          pending = pending.filter((i) => !guilty.includes(i));
        }
      }
    }
    return { slices, errors };
  }

  /**
   * Reserves the chunk's units on the contract that pays (chosen as predict chooses, again for every chunk);
   * waits out the contract's rate limit. The usage record to end it with.
   */
  async #reserve(
    actor: Actor,
    batch: BatchPrediction,
    model: Parameters<LicenceAuthorizer['authorize']>[1],
    version: Parameters<LicenceAuthorizer['authorize']>[2],
    units: number,
  ) {
    for (let waited = 0; ;) {
      let grant = await this.authorizer.authorize(actor, model, version, batch.contractId);
      const record = {
        predictionId: randomUUID(),
        consumerId: batch.requesterId,
        apiKeyId: batch.apiKeyId,
        modelId: batch.modelId,
        modelVersionId: batch.versionId,
        contract: grant.contract,
        units,
        requestId: null,
      };
      if (!grant.contract) return record;
      // Named before it is taken, for a duplicate run of the chunk to see (#otherRunHoldsLease).
      await this.pool.query(
        'UPDATE batch_predictions SET chunk_lease_ids = array_append(chunk_lease_ids, $2) WHERE id = $1 AND chunks_done = $3',
        [batch.id, record.predictionId, batch.chunksDone],
      );
      try {
        try {
          await this.metering.reserve(grant.contract, units, record.predictionId);
        } catch (error) {
          if (!(error instanceof ContractInactiveError)) throw error;
          grant = await this.authorizer.authorize(actor, model, version, batch.contractId, { fresh: true });
          record.contract = grant.contract;
          if (grant.contract) await this.metering.reserve(grant.contract, units, record.predictionId);
        }
        return record;
      } catch (error) {
        await recordFailedCall(this.metering, record, error, performance.now());
        if (!(error instanceof RateLimitedError)) throw error;
        // Not the batch's failure: its job runs the chunk again later.
        if (waited > MAX_WAIT_PER_CHUNK_MS) throw new Error('rate limited for too long', { cause: error });
        const ms = Number(error.extensions.retryAfter) * 1000;
        waited += ms;
        await sleep(ms);
      }
    }
  }

  /** Runs the encoded slices; an overloaded engine is waited out (not billed), longer each time. */
  async #predict(
    signature: Signature,
    sha256: string,
    topK: number,
    slices: { rows: number[]; tensors: TensorInput | TensorInput[] }[],
    outputs: Map<number, PredictionOutput>,
  ): Promise<void> {
    const modelRef = this.artifacts.modelRef(sha256);
    for (let overloads = 0; ;) {
      try {
        const decoded = await Promise.all(
          slices.map(async ({ tensors }) =>
            isNamed(signature)
              ? decodeNamedOutputs(
                  signature,
                  await this.engine.predictTensors(modelRef, tensors as TensorInput[]),
                  topK,
                )
              : decodeOutputs(signature, await this.engine.predict(modelRef, tensors as TensorInput), topK),
          ),
        );
        slices.forEach((slice, s) => slice.rows.forEach((row, i) => outputs.set(row, decoded[s]![i]!)));
        return;
      } catch (cause) {
        const error = inferenceCallError(cause);
        if (!isOverloaded(error)) throw error;
        // Not the batch's failure: its job runs the chunk again later.
        if (overloads > MAX_OVERLOADS_PER_CHUNK) throw new Error('the engine stayed overloaded', { cause: error });
        await sleep(overloadBackoffMs(overloads++));
      }
    }
  }

  /**
   * Commits the chunk: its sealed results, its usage record (billing its reservation), the batch's progress, and
   * the next chunk's job or the batch's end — or nothing, when the batch ended meanwhile or another run of the
   * chunk committed first (then its reservation is given back).
   */
  async #commitChunk(
    batch: BatchPrediction,
    chunk: number,
    lines: ResultLine[],
    last: DatasetRow,
    failedRows: number,
    record: CallRecord | null,
    started: number,
  ): Promise<void> {
    const text = lines.map((line) => `${JSON.stringify(line)}\n`).join('');
    const sealed = this.secrets.seal(text, sealLabel(batch.id, chunk));
    let committed = false;
    let ended = false;
    try {
      await this.#inTransaction(async (client) => {
        const { rows } = await client.query<{ status: BatchPredictionStatus; chunks_done: number }>(
          'SELECT status, chunks_done FROM batch_predictions WHERE id = $1 FOR UPDATE',
          [batch.id],
        );
        const row = rows[0];
        if (!row || !ACTIVE.includes(row.status) || row.chunks_done !== chunk) throw new ChunkSuperseded();
        await client.query(
          'INSERT INTO batch_prediction_chunks (batch_id, chunk, first_row, rows, results) VALUES ($1, $2, $3, $4, $5)',
          [batch.id, chunk, lines[0]!.row, lines.length, sealed],
        );
        if (record) {
          const latencyMs = performance.now() - started;
          await this.metering.recordIn(client, { ...record, status: 'OK', latencyMs, idempotentResponse: undefined });
        }
        const { rows: updated } = await client.query<{ processed: number; total: number }>(
          `UPDATE batch_predictions
           SET status = 'RUNNING', started_at = coalesce(started_at, now()), processed = processed + $2,
               failed_rows = failed_rows + $3, billed_units = billed_units + $4, chunks_done = chunks_done + 1,
               next_offset = $5, next_line = $6, chunk_lease_ids = '{}'
           WHERE id = $1 RETURNING processed, total`,
          [batch.id, lines.length, failedRows, record?.contract ? record.units : 0, last.end, last.line],
        );
        const { processed, total } = updated[0]!;
        if (processed < total) {
          const next = { batchId: batch.id, chunk: chunk + 1 } satisfies ChunkJob;
          const jobId = await this.jobs.send(this.#chunkJob.name, next, { client });
          await client.query('UPDATE batch_predictions SET chunk_job_id = $2 WHERE id = $1', [batch.id, jobId]);
        } else {
          await this.#endIn(client, batch.id, 'SUCCEEDED', null);
          ended = true;
        }
      });
      committed = true;
    } finally {
      if (record) await this.metering.settle(record.predictionId, committed);
    }
    if (ended) this.events.wake();
    else this.jobs.wake(this.#chunkJob.name);
  }

  /**
   * Ends an active batch in the caller's transaction: its status, its end, when its results expire (and the
   * job that deletes them then), and its batch.completed event. Null when it had ended already.
   */
  async #endIn(
    client: pg.ClientBase,
    id: string,
    status: BatchPredictionStatus,
    error: BatchPredictionError | null,
  ): Promise<{ processed: number; total: number } | null> {
    const { rows } = await client.query<{ id: string }>(
      `UPDATE batch_predictions
       SET status = $2, error = $3::jsonb, completed_at = now(),
           results_expire_at = now() + make_interval(days => $4)
       WHERE id = $1 AND status IN ('QUEUED', 'RUNNING') RETURNING id`,
      [id, status, error === null ? null : JSON.stringify(error), this.limits.resultsTtlDays],
    );
    if (rows.length === 0) return null;
    const { rows: ended } = await client.query<{
      requester_id: string;
      processed: number;
      total: number;
      failed_rows: number;
      webhook: string | null;
      slug: string;
      version: string;
      results_expire_at: Date;
    }>(
      `SELECT b.requester_id, b.processed, b.total, b.failed_rows, b.webhook, m.slug, v.version, b.results_expire_at
       FROM batch_predictions b JOIN models m ON m.id = b.model_id JOIN model_versions v ON v.id = b.version_id
       WHERE b.id = $1`,
      [id],
    );
    const row = ended[0]!;
    await this.jobs.send(this.#expiryJob.name, { batchId: id }, { client, startAfter: row.results_expire_at });
    await this.events.emit(client, [
      {
        type: EventType.BATCH_COMPLETED,
        accountId: row.requester_id,
        data: {
          id,
          status,
          processed: row.processed,
          total: row.total,
          failedRows: row.failed_rows,
          model: row.slug,
          version: row.version,
          ...(error ? { error } : {}),
          ...(row.webhook ? { webhook: row.webhook, webhookEvents: [EventType.BATCH_COMPLETED] } : {}),
        },
      },
    ]);
    return { processed: row.processed, total: row.total };
  }

  /** Deletes an ended batch's results once they expired; the batch row (status, counts) stays. */
  async #deleteResults(batchId: string): Promise<void> {
    await this.#inTransaction(async (client) => {
      const { rowCount } = await client.query(
        `UPDATE batch_predictions SET results_deleted_at = now()
         WHERE id = $1 AND results_expire_at <= now() AND results_deleted_at IS NULL`,
        [batchId],
      );
      if (rowCount) await client.query('DELETE FROM batch_prediction_chunks WHERE batch_id = $1', [batchId]);
    });
  }

  async #inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}

/** Whether `out` drained (true) or closed first (false: the client went away). */
function drained(out: Writable): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = () => {
      out.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      out.off('drain', onDrain);
      resolve(false);
    };
    out.once('drain', onDrain);
    out.once('close', onClose);
  });
}

/** The associated data a chunk's results are sealed under: they open only as that chunk of that batch. */
const sealLabel = (batchId: string, chunk: number) => `batch-results:${batchId}:${chunk}`;
