// Evaluations: a classification version run over a labelled data set, in the background, through the same path
// predict serves (the serving catalog's version and artifact, the input encoder, the batching inference engine),
// `chunkSize` examples at a time. Progress is written per chunk; a cancel (on any server: it is a row update)
// stops the run between chunks. Comparisons run two versions over the same examples, chunk by chunk, and say
// where they disagree.
//
// Who pays: the model's owner and admins evaluate freely (not metered); a licensee evaluates the versions an
// ACTIVE contract covers (decided as for predict), and every chunk is metered like one predict call of that many
// instances: reserved (rate limit and quota) before it runs, recorded after (billed when OK, given back otherwise).
// A quota used up midway fails the run with QUOTA_EXCEEDED after the chunks already billed.
//
// Crash safety: a run's row names its server instance. A process that dies leaves its runs to the next sweep (at
// start and every LEASE_SWEEP_INTERVAL_MS, on any server), which marks them FAILED ("interrupted"); what their
// chunk in flight had reserved is a quota lease of the dead instance, given back by the metering sweep. A
// graceful stop fails its own runs the same way, after their chunk in flight has been recorded.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { GraphQLError } from 'graphql';
import type pg from 'pg';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { requireUserId, type Actor } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { ServerInstance } from '../db/server-instance.js';
import type {
  Comparison,
  Dataset,
  Evaluation,
  Model,
  ModelVersion,
  Prisma as PrismaTypes,
} from '../generated/prisma/client.js';
import { InferenceInputError, type InferenceEngine, type TensorInput } from '../inference/engine.js';
import type { LicenceAuthorizer } from '../licensing/predict-authorizer.js';
import { ContractInactiveError, type MeteringService } from '../metering/metering-service.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { canManage, canView, isAdmin } from '../models/model-policy.js';
import { isNamed, outputSizeOf, type SingleSignature } from '../models/signature.js';
import type { InputEncoder, InputLimits } from '../predictions/input-encoding.js';
import { checkedWidth } from '../predictions/output-decoding.js';
import {
  assertStorableRefs,
  errorCode,
  inferenceCallError,
  recordFailedCall,
  type CallRecord,
} from '../predictions/predict-service.js';
import type { ServingCatalog } from '../predictions/serving-catalog.js';
import {
  BadUserInputError,
  ConflictError,
  ErrorCode,
  ForbiddenError,
  NotFoundError,
  RateLimitedError,
  ServiceUnavailableError,
} from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import type { Logger } from '../server/logger.js';
import {
  datasetChunks,
  DatasetFormatError,
  classIndexOf,
  type DatasetLimits,
  type DatasetRow,
} from './dataset-format.js';
import { PreprocessingOverloadedError } from '../preprocessing/preprocessing-pool.js';
import type { DatasetsService } from './datasets-service.js';
import { argmaxRows, classificationMetrics, type ClassificationMetrics } from './metrics.js';

export interface EvaluationLimits {
  chunkSize: number;
  maxRunningPerUser: number;
  maxRunning: number;
}

/** What a finished (or stopped) run measured; `partial` when it stopped before the last example. */
export interface EvaluationReport extends ClassificationMetrics {
  examplesEvaluated: number;
  datasetSha256: string;
  durationMs: number;
  partial: boolean;
}

export interface EvaluationError {
  code: string;
  message: string;
}

/** Where two versions' answers differ, over the examples both evaluated (indices count examples from 0). */
export interface Disagreement {
  examples: number;
  differing: number;
  aRightBWrong: number;
  bRightAWrong: number;
  differingIndices: number[];
  aRightBWrongIndices: number[];
  bRightAWrongIndices: number[];
}

export type ComparisonWithRuns = Comparison & { a: Evaluation; b: Evaluation };

/** What a version's card shows of a published evaluation. */
export interface VerifiedMetrics {
  verified: true;
  accuracy: number;
  macroF1: number;
  datasetSha256: string;
  examples: number;
  evaluationId: string;
  evaluatedAt: Date;
}

const ACTIVE: Evaluation['status'][] = ['QUEUED', 'RUNNING'];
/** Example indices a comparison's disagreement keeps of each kind. */
const MAX_DISAGREEMENT_INDICES = 20;
/** The end of a run whose server stopped (killed: by the next sweep; stopping: by itself). */
const INTERRUPTED: EvaluationError = {
  code: 'INTERRUPTED',
  message: 'interrupted: the server running the evaluation stopped; start it again',
};
/** Advisory lock class serialising the concurrency-limit check with the insert (7275001/2 are taken). */
const START_LOCK_CLASS = 7275003;

/** One version a run evaluates. */
interface RunTarget {
  evaluationId: string;
  model: Model;
  version: ModelVersion;
  sha256: string;
  predicted: number[];
}

/** A run in this process. */
interface Run {
  actor: Actor;
  dataset: Dataset;
  signature: SingleSignature;
  targets: RunTarget[];
  comparisonId: string | null;
  /** Whether a chunk was billed to a contract (the caller is a licensee). */
  metered: boolean;
  /** Set by a cancel on this server, or a stop: the run ends before its next chunk. */
  stopped: EvaluationError | 'cancelled' | null;
  done: Promise<void>;
}

/** Ends a run between chunks: it was cancelled or stopped here, or its row was ended elsewhere. */
class RunEnded extends Error {}

/** The longest wait before running a chunk again after the engine (or image decoding) was overloaded. */
const MAX_OVERLOAD_WAIT_MS = 10_000;

export function isOverloaded(error: unknown): boolean {
  return error instanceof GraphQLError && error.extensions.code === ErrorCode.OVERLOADED;
}

/** The wait after the `attempt`-th overload in a row (from 0): predict's retryAfter, doubling, bounded. */
export function overloadBackoffMs(attempt: number): number {
  return Math.min(MAX_OVERLOAD_WAIT_MS, 1000 * 2 ** Math.min(attempt, 10));
}

/** The verified metrics of versions (their latest published evaluation), by version id. */
export async function readVerifiedMetrics(
  prisma: Pick<Prisma, 'evaluation'>,
  versionIds: readonly string[],
): Promise<(VerifiedMetrics | null)[]> {
  const rows = await prisma.evaluation.findMany({
    where: { versionId: { in: [...versionIds] }, publishedAt: { not: null } },
    orderBy: { publishedAt: 'desc' },
    distinct: ['versionId'],
  });
  const byVersion = new Map(rows.map((row) => [row.versionId, row]));
  return versionIds.map((id) => {
    const row = byVersion.get(id);
    if (!row) return null;
    const report = row.report as unknown as EvaluationReport;
    return {
      verified: true,
      accuracy: report.accuracy,
      macroF1: report.macroF1,
      datasetSha256: row.datasetSha256,
      examples: report.examplesEvaluated,
      evaluationId: row.id,
      evaluatedAt: row.finishedAt ?? row.createdAt,
    };
  });
}

export class EvaluationsService {
  readonly #runs = new Map<string, Run>();
  readonly #timer: NodeJS.Timeout;
  #stopping = false;

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
    private readonly instance: ServerInstance,
    private readonly logger: Logger,
    private readonly limits: EvaluationLimits & DatasetLimits,
    sweepIntervalMs: number,
  ) {
    this.#timer = setInterval(() => void this.sweep().catch(() => undefined), sweepIntervalMs);
    this.#timer.unref();
  }

  /** Starts evaluating a version on one of the caller's data sets; answers at once (QUEUED). */
  async evaluate(
    actor: Actor,
    input: { model: string; version?: string | null; dataset: string },
  ): Promise<Evaluation> {
    const { dataset, target, signature } = await this.#prepare(
      actor,
      input.model,
      input.version,
      input.dataset,
      'input.version',
    );
    const [evaluation] = await this.#start(actor, dataset, signature, [target], null);
    return evaluation!;
  }

  /** Starts evaluating two versions of a model side by side on one data set. */
  async compare(
    actor: Actor,
    input: { model: string; a: string; b: string; dataset: string },
  ): Promise<ComparisonWithRuns> {
    const a = await this.#prepare(actor, input.model, input.a, input.dataset, 'input.a');
    const b = await this.#prepare(actor, input.model, input.b, input.dataset, 'input.b');
    if (a.target.version.id === b.target.version.id) {
      throw new BadUserInputError('a and b are the same version', 'input.b');
    }
    if (JSON.stringify(a.signature) !== JSON.stringify(b.signature)) {
      throw new BadUserInputError('a and b have different signatures: their answers cannot be compared', 'input.b');
    }
    const comparisonId = randomUUID();
    const [evalA, evalB] = await this.#start(actor, a.dataset, a.signature, [a.target, b.target], comparisonId);
    const comparison = await this.prisma.comparison.findUniqueOrThrow({ where: { id: comparisonId } });
    return { ...comparison, a: evalA!, b: evalB! };
  }

  /** An evaluation its requester (or an admin) may read, or NOT_FOUND. */
  async find(actor: Actor, id: string): Promise<Evaluation> {
    assertUuid(id, 'id');
    const evaluation = await this.prisma.evaluation.findUnique({ where: { id } });
    if (!evaluation || !this.#canRead(actor, evaluation)) throw new NotFoundError('Evaluation');
    return evaluation;
  }

  async findComparison(actor: Actor, id: string): Promise<ComparisonWithRuns> {
    assertUuid(id, 'id');
    // The runs first, then the comparison: a run read as ended has its disagreement written (one transaction), so
    // the comparison read after it has it too (an include may read them the other way round).
    const evaluations = await this.prisma.evaluation.findMany({ where: { comparisonId: id } });
    const comparison = await this.prisma.comparison.findUnique({ where: { id } });
    if (!comparison || !this.#canRead(actor, comparison)) throw new NotFoundError('Comparison');
    return this.#withRuns({ ...comparison, evaluations });
  }

  /** The caller's evaluations, newest first, of one model when `model` (a slug) is given. */
  async mine(actor: Actor, model?: string | null): Promise<Evaluation[]> {
    const requesterId = requireUserId(actor.principal);
    const where: PrismaTypes.EvaluationWhereInput = { requesterId };
    if (model != null) {
      assertStorableRefs({ model });
      where.model = { slug: model };
    }
    return this.prisma.evaluation.findMany({ where, orderBy: [{ createdAt: 'desc' }, { id: 'asc' }], take: 200 });
  }

  /**
   * Cancels a QUEUED or RUNNING evaluation (of a comparison: both halves). The run stops before its next chunk;
   * what was evaluated stays in its report, what was billed stays billed.
   */
  async cancel(actor: Actor, id: string): Promise<Evaluation> {
    const evaluation = await this.find(actor, id);
    const scope = evaluation.comparisonId ? { comparisonId: evaluation.comparisonId } : { id };
    await this.prisma.$transaction(async (tx) => {
      const { count } = await tx.evaluation.updateMany({
        where: { ...scope, status: { in: ACTIVE } },
        data: { status: 'CANCELLED', finishedAt: new Date() },
      });
      if (count === 0) throw new ConflictError(`The evaluation already ended (${evaluation.status})`);
      await this.audit.record(
        actor,
        { action: AuditAction.EVALUATION_CANCELLED, targetType: 'Evaluation', targetId: id },
        tx,
      );
    });
    const run = this.#runs.get(evaluation.comparisonId ?? id);
    if (run) run.stopped ??= 'cancelled';
    return this.prisma.evaluation.findUniqueOrThrow({ where: { id } });
  }

  /**
   * Publishes a SUCCEEDED evaluation of the caller's own version to the version's card, as its verified metrics
   * (the latest published one is shown). Only an evaluation the model's owner (or an admin) ran.
   */
  async publish(actor: Actor, id: string): Promise<Evaluation> {
    const evaluation = await this.find(actor, id);
    const model = await this.prisma.model.findUniqueOrThrow({ where: { id: evaluation.modelId } });
    if (!canManage(actor.principal, model)) {
      throw new ForbiddenError("Only the model's owner publishes evaluations to its card");
    }
    // An admin's (or anyone else's) run is private to them: only the owner's own evaluations go on the card.
    if (evaluation.requesterId !== model.ownerId) {
      throw new ForbiddenError("Only an evaluation run by the model's owner is published to its card");
    }
    if (evaluation.status !== 'SUCCEEDED') {
      throw new BadUserInputError(`Only a finished evaluation is published (this one is ${evaluation.status})`, 'id');
    }
    return this.prisma.$transaction(async (tx) => {
      const published = await tx.evaluation.update({ where: { id }, data: { publishedAt: new Date() } });
      await this.audit.record(
        actor,
        {
          action: AuditAction.EVALUATION_PUBLISHED,
          targetType: 'ModelVersion',
          targetId: evaluation.versionId,
          details: { evaluation: id, datasetSha256: evaluation.datasetSha256 },
        },
        tx,
      );
      return published;
    });
  }

  /** The verified metrics of versions (their latest published evaluation), by version id. */
  verifiedMetrics(versionIds: readonly string[]): Promise<(VerifiedMetrics | null)[]> {
    return readVerifiedMetrics(this.prisma, versionIds);
  }

  /** Marks FAILED ("interrupted") the runs whose server died. */
  async sweep(): Promise<void> {
    const { rowCount } = await this.pool.query(
      `UPDATE evaluations SET status = 'FAILED', finished_at = now(), error = $1::jsonb
       WHERE status IN ('QUEUED', 'RUNNING')
         AND (server_instance IS NULL OR server_instance NOT IN (SELECT instance FROM mm_live_server_instances()))`,
      [JSON.stringify(INTERRUPTED)],
    );
    if (rowCount) this.logger.info({ evaluations: rowCount }, 'marked the evaluations of stopped servers interrupted');
  }

  /** Stops every run of this process after its chunk in flight (recorded), marking it FAILED ("interrupted"). */
  async close(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    for (const run of this.#runs.values()) run.stopped ??= INTERRUPTED;
    await Promise.all([...this.#runs.values()].map((run) => run.done));
  }

  #canRead(actor: Actor, row: { requesterId: string }): boolean {
    return (
      (actor.principal.kind !== 'anonymous' && actor.principal.userId === row.requesterId) || isAdmin(actor.principal)
    );
  }

  #withRuns(comparison: Comparison & { evaluations: Evaluation[] }): ComparisonWithRuns {
    const { evaluations, ...rest } = comparison;
    // Created in order: a, then b (ids are compared by creation time, then id).
    const [a, b] = [...evaluations].sort(
      (x, y) => x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : 1),
    );
    return { ...rest, a: a!, b: b! };
  }

  /** Resolves and checks what a run needs: the version (classification, one input), the right to run it, the data set. */
  async #prepare(
    actor: Actor,
    modelSlug: string,
    versionRef: string | null | undefined,
    datasetId: string,
    field: string,
  ) {
    assertStorableRefs({ 'input.model': modelSlug, [field]: versionRef });
    const ref = versionRef ?? 'latest';
    const resolved = await this.catalog.resolve(modelSlug, ref);
    if (!resolved || !canView(actor.principal, resolved.model)) throw new NotFoundError('Model');
    const { model, served } = resolved;
    if (!served) throw new NotFoundError(`Version "${ref}" of ${modelSlug}`);
    const { version, signature, sha256 } = served;
    if (isNamed(signature)) {
      throw new BadUserInputError(
        `${modelSlug} ${version.version} takes several named inputs; evaluations take models of one input`,
        field,
      );
    }
    if (signature.output.kind !== 'classification') {
      throw new BadUserInputError(
        `${modelSlug} ${version.version} is not a classifier (its output is values): evaluations measure accuracy and F1 of classifiers`,
        field,
      );
    }
    if (version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    // The caller's right to run the version, as for predict (each chunk checks it again).
    await this.authorizer.authorize(actor, model, version, null);
    const dataset = await this.datasets.find(actor, datasetId, 'input.dataset');
    const target: RunTarget = { evaluationId: randomUUID(), model, version, sha256, predicted: [] };
    return { dataset, target, signature };
  }

  /** Checks the concurrency limits and inserts the run's rows (QUEUED) in one transaction, then starts it. */
  async #start(
    actor: Actor,
    dataset: Dataset,
    signature: SingleSignature,
    targets: RunTarget[],
    comparisonId: string | null,
  ): Promise<Evaluation[]> {
    if (this.#stopping) throw new ServiceUnavailableError('The server is stopping; retry', 1);
    const requesterId = requireUserId(actor.principal);
    const rows = await this.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(${START_LOCK_CLASS}, 0)`;
      const [counts] = await tx.$queryRaw<{ mine: number; all: number }[]>`
        SELECT count(DISTINCT coalesce(comparison_id, id)) FILTER (WHERE requester_id = ${requesterId}::uuid)::int AS mine,
               count(DISTINCT coalesce(comparison_id, id))::int AS all
        FROM evaluations WHERE status IN ('QUEUED', 'RUNNING')`;
      if (counts!.mine >= this.limits.maxRunningPerUser) {
        throw new RateLimitedError(
          `You have ${counts!.mine} evaluations running (at most ${this.limits.maxRunningPerUser}); wait for one to finish or cancel one`,
          5,
        );
      }
      if (counts!.all >= this.limits.maxRunning) {
        throw new GraphQLError('Too many evaluations are running; retry shortly', {
          extensions: { code: ErrorCode.OVERLOADED, retryAfter: 5, http: { status: 503 } },
        });
      }
      if (comparisonId)
        await tx.comparison.create({ data: { id: comparisonId, requesterId, modelId: targets[0]!.model.id } });
      const created: Evaluation[] = [];
      for (const target of targets) {
        created.push(
          await tx.evaluation.create({
            data: {
              id: target.evaluationId,
              requesterId,
              modelId: target.model.id,
              versionId: target.version.id,
              datasetId: dataset.id,
              datasetSha256: dataset.sha256,
              comparisonId,
              examplesTotal: dataset.rows,
              serverInstance: this.instance.id,
            },
          }),
        );
        await this.audit.record(
          actor,
          {
            action: AuditAction.EVALUATION_STARTED,
            targetType: 'Evaluation',
            targetId: target.evaluationId,
            details: { version: target.version.id, datasetSha256: dataset.sha256, comparison: comparisonId },
          },
          tx,
        );
      }
      return created;
    });
    const run: Run = {
      actor,
      dataset,
      signature,
      targets,
      comparisonId,
      metered: false,
      stopped: null,
      done: Promise.resolve(),
    };
    const key = comparisonId ?? targets[0]!.evaluationId;
    this.#runs.set(key, run);
    run.done = this.#run(run)
      .catch((error: unknown) =>
        this.logger.error({ err: error, evaluation: key }, 'an evaluation could not record its end'),
      )
      .finally(() => this.#runs.delete(key));
    return rows;
  }

  async #run(run: Run): Promise<void> {
    const started = performance.now();
    const ids = run.targets.map((t) => t.evaluationId);
    const trueClasses: number[] = [];
    try {
      const content = await this.datasets.content(run.dataset);
      // Every example is checked against the signature before anything runs (or is billed).
      for await (const chunk of this.#chunks(content, run)) {
        if (run.stopped) throw new RunEnded();
        await this.#encode(run, chunk);
      }
      await this.#advance(ids, 'QUEUED', { status: 'RUNNING' });
      for await (const chunk of this.#chunks(content, run)) {
        if (run.stopped) throw new RunEnded();
        const encoded = await this.#encode(run, chunk);
        // A version's report covers the chunks it evaluated (and was billed for), even when the other failed.
        trueClasses.push(...chunk.map((row) => row.label as number));
        for (const target of run.targets) await this.#evaluateChunk(run, target, encoded);
        await this.#advance(ids, 'RUNNING', { examplesEvaluated: trueClasses.length });
      }
      await this.#end(run, trueClasses, performance.now() - started, 'SUCCEEDED', null);
    } catch (error) {
      const durationMs = performance.now() - started;
      if (error instanceof RunEnded) {
        // Stopped here (a cancel, or this server stopping), or elsewhere (another server's cancel, a sweep: the
        // row already says how it ended).
        const { stopped } = run;
        if (stopped === 'cancelled') await this.#end(run, trueClasses, durationMs, 'CANCELLED', null);
        else await this.#end(run, trueClasses, durationMs, stopped ? 'FAILED' : null, stopped);
        return;
      }
      const failure: EvaluationError = {
        code: errorCode(error),
        message: error instanceof GraphQLError ? error.message : 'The evaluation failed',
      };
      if (!(error instanceof GraphQLError)) this.logger.error({ err: error, evaluations: ids }, 'an evaluation failed');
      failure.message += partialNote(run);
      await this.#end(run, trueClasses, durationMs, 'FAILED', failure);
    }
  }

  /** The data set's examples, a chunk at a time, each label read as a class index of the signature. */
  async *#chunks(content: Buffer, run: Run): AsyncGenerator<DatasetRow[]> {
    const labels = (run.signature.output as { labels: string[] }).labels;
    try {
      for await (const chunk of datasetChunks(content, run.dataset.format, this.limits, this.limits.chunkSize)) {
        for (const row of chunk) {
          if (row.label === undefined)
            throw new DatasetFormatError('missing "label": evaluations need labels', row.line);
          const index = classIndexOf(row.label, labels);
          if (index === null) {
            throw new DatasetFormatError(
              `label ${JSON.stringify(row.label)} is not one of the model's ${labels.length} classes`,
              row.line,
            );
          }
          row.label = index;
        }
        yield chunk;
      }
    } catch (error) {
      if (error instanceof DatasetFormatError) {
        throw new BadUserInputError(`The data set does not fit this model: ${error.message}`, 'input.dataset', {
          ...(error.line === null ? {} : { line: error.line }),
        });
      }
      throw error;
    }
  }

  /**
   * A chunk's inputs as predict encodes them, in slices that each fit one predict call's image budgets (one slice
   * for other inputs): an example may take what one predict instance may, and a chunk is not held to one call's
   * bytes and pixels. A refused value is BAD_USER_INPUT naming its line.
   */
  async #encode(run: Run, chunk: DatasetRow[]): Promise<TensorInput[]> {
    const slices =
      run.signature.input.preprocessing.kind === 'image' ? imageSlices(chunk, this.encoder.imageLimits) : [chunk];
    const encoded: TensorInput[] = [];
    for (const slice of slices) encoded.push(await this.#encodeSlice(run, slice));
    return encoded;
  }

  async #encodeSlice(run: Run, chunk: DatasetRow[]): Promise<TensorInput> {
    if (run.dataset.format === 'CSV' && run.signature.input.preprocessing.kind !== 'tabular') {
      throw new BadUserInputError('A CSV data set evaluates tabular models only; send JSONL', 'input.dataset', {
        line: chunk[0]!.line,
      });
    }
    for (let overloads = 0; ;) {
      try {
        return await this.#encodeOnce(run, chunk);
      } catch (error) {
        if (!(error instanceof PreprocessingOverloadedError)) throw error;
        // Image decoding is overloaded: wait, as for the engine, and decode the chunk again.
        await this.#wait(run, overloadBackoffMs(overloads++));
      }
    }
  }

  async #encodeOnce(run: Run, chunk: DatasetRow[]): Promise<TensorInput> {
    try {
      return await this.encoder.encode(
        run.signature,
        chunk.map((row) => row.input),
        'example',
        { maxInstances: this.limits.chunkSize, maxOutputValues: Number.MAX_SAFE_INTEGER },
      );
    } catch (error) {
      if (!(error instanceof BadUserInputError)) throw error;
      const at = /^example\[(\d+)\](\S*): /.exec(error.message);
      const row = at ? chunk[Number(at[1])] : undefined;
      if (!row) throw new BadUserInputError(`The data set does not fit this model: ${error.message}`, 'input.dataset');
      throw new BadUserInputError(
        `The data set does not fit this model: line ${row.line}: input${at![2]}: ${error.message.slice(at![0].length)}`,
        'input.dataset',
        { line: row.line },
      );
    }
  }

  /** Runs one chunk on one version; for a licensee, one metered call of that many units. */
  async #evaluateChunk(run: Run, target: RunTarget, encoded: TensorInput[]): Promise<void> {
    const { actor } = run;
    const units = encoded.reduce((sum, slice) => sum + slice.shape[0]!, 0);
    const modelRef = this.artifacts.modelRef(target.sha256);
    for (let overloads = 0; ;) {
      // As predict does on every call: a model its owner made private meanwhile is no longer found.
      const current = await this.catalog.resolve(target.model.slug, target.version.version);
      if (!current || !canView(actor.principal, current.model)) throw new NotFoundError('Model');
      let grant = await this.authorizer.authorize(actor, target.model, target.version, null);
      if (!grant.contract) {
        try {
          target.predicted.push(...(await this.#predict(modelRef, run.signature, encoded)));
        } catch (error) {
          if (!isOverloaded(error)) throw error;
          await this.#wait(run, overloadBackoffMs(overloads++));
          continue;
        }
        return;
      }
      const started = performance.now();
      const record: CallRecord = {
        predictionId: randomUUID(),
        consumerId: requireUserId(actor.principal),
        apiKeyId: actor.principal.kind === 'apiKey' ? actor.principal.apiKeyId : null,
        modelId: target.model.id,
        modelVersionId: target.version.id,
        contract: grant.contract,
        units,
        requestId: null,
        kind: 'EVALUATION',
      };
      let predicted: number[];
      try {
        try {
          await this.metering.reserve(grant.contract, units, record.predictionId);
        } catch (error) {
          if (!(error instanceof ContractInactiveError)) throw error;
          // The contract stopped being usable: choose again from fresh rows (throws the reason when none is).
          grant = await this.authorizer.authorize(actor, target.model, target.version, null, { fresh: true });
          record.contract = grant.contract;
          if (grant.contract) await this.metering.reserve(grant.contract, units, record.predictionId);
        }
        predicted = await this.#predict(modelRef, run.signature, encoded);
      } catch (error) {
        await recordFailedCall(this.metering, record, error, started);
        // Over the contract's rate limit: wait (cancellable) and run the chunk again as a new call.
        if (error instanceof RateLimitedError) {
          await this.#wait(run, Number(error.extensions.retryAfter) * 1000);
          continue;
        }
        // The engine is overloaded (not billed): wait, longer each time, and run the chunk again.
        if (isOverloaded(error)) {
          await this.#wait(run, overloadBackoffMs(overloads++));
          continue;
        }
        throw error;
      }
      await this.metering.record({
        ...record,
        status: 'OK',
        latencyMs: performance.now() - started,
        idempotentResponse: undefined,
      });
      run.metered = true;
      target.predicted.push(...predicted);
      return;
    }
  }

  /** The chunk's predicted classes; predict's output checks (width, finite values) and error mapping apply. */
  async #predict(
    modelRef: ReturnType<ArtifactService['modelRef']>,
    signature: SingleSignature,
    encoded: TensorInput[],
  ): Promise<number[]> {
    try {
      const outputs = await Promise.all(encoded.map((slice) => this.engine.predict(modelRef, slice)));
      return outputs.flatMap((output) => argmaxRows(output.data, checkedWidth(output, outputSizeOf(signature))));
    } catch (error) {
      if (error instanceof InferenceInputError) throw new BadUserInputError(error.message, 'input.dataset');
      throw inferenceCallError(error);
    }
  }

  async #wait(run: Run, ms: number): Promise<void> {
    for (const until = Date.now() + ms; Date.now() < until;) {
      if (run.stopped) throw new RunEnded();
      await sleep(Math.min(250, until - Date.now()));
    }
  }

  /** Moves the run's rows on, unless they were ended meanwhile (a cancel, a sweep): then the run stops. */
  async #advance(ids: string[], from: Evaluation['status'], data: PrismaTypes.EvaluationUpdateManyMutationInput) {
    const { count } = await this.prisma.evaluation.updateMany({ where: { id: { in: ids }, status: from }, data });
    if (count !== ids.length) throw new RunEnded();
  }

  /**
   * Ends the run whatever happens: when its report cannot be written (a metrics error, the database away), its
   * rows still end FAILED, the write retried until it lands (a RUNNING row would count against the running limits
   * for ever: the sweep only ends the runs of stopped servers). A stopping server leaves them to that sweep.
   */
  async #end(
    run: Run,
    trueClasses: number[],
    durationMs: number,
    status: 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | null,
    error: EvaluationError | null,
  ): Promise<void> {
    const ids = run.targets.map((t) => t.evaluationId);
    try {
      await this.#finish(run, trueClasses, durationMs, status, error);
      return;
    } catch (cause) {
      this.logger.error({ err: cause, evaluations: ids }, 'an evaluation could not record its report');
    }
    const failure: EvaluationError = {
      code: ErrorCode.INTERNAL_SERVER_ERROR,
      message: `The evaluation failed: its report could not be recorded${partialNote(run)}`,
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.prisma.evaluation.updateMany({
          where: { id: { in: ids }, status: { in: ACTIVE } },
          data: {
            status: 'FAILED',
            finishedAt: new Date(),
            error: failure as unknown as PrismaTypes.InputJsonObject,
          },
        });
        return;
      } catch (cause) {
        if (this.#stopping) throw cause;
        await sleep(Math.min(30_000, 250 * 2 ** Math.min(attempt, 7)));
      }
    }
  }

  /**
   * Writes the run's end: `status` (null: keep the status another server or a cancel set) with the report of the
   * examples evaluated, and for a comparison, where the versions disagree.
   */
  async #finish(
    run: Run,
    trueClasses: number[],
    durationMs: number,
    status: 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | null,
    error: EvaluationError | null,
  ): Promise<void> {
    const labels = (run.signature.output as { labels: string[] }).labels;
    await this.prisma.$transaction(async (tx) => {
      for (const target of run.targets) {
        const n = target.predicted.length;
        const report: EvaluationReport | null =
          n === 0
            ? null
            : {
                ...classificationMetrics(trueClasses.slice(0, n), target.predicted, labels.length, labels),
                examplesEvaluated: n,
                datasetSha256: run.dataset.sha256,
                durationMs: Math.round(durationMs),
                partial: n < run.dataset.rows,
              };
        // The report of what was evaluated is kept however the run ended (a cancel set its status already).
        await tx.evaluation.update({
          where: { id: target.evaluationId },
          data: {
            examplesEvaluated: n,
            ...(report ? { report: report as unknown as PrismaTypes.InputJsonObject } : {}),
          },
        });
        if (status) {
          await tx.evaluation.updateMany({
            where: { id: target.evaluationId, status: { in: ACTIVE } },
            data: {
              status,
              finishedAt: new Date(),
              ...(error ? { error: error as unknown as PrismaTypes.InputJsonObject } : {}),
            },
          });
        }
      }
      const both = Math.min(...run.targets.map((t) => t.predicted.length));
      if (run.comparisonId && both > 0) {
        await tx.comparison.update({
          where: { id: run.comparisonId },
          data: {
            disagreement: disagreement(
              trueClasses.slice(0, both),
              run.targets[0]!.predicted,
              run.targets[1]!.predicted,
            ) as object,
          },
        });
      }
    });
  }
}

/**
 * A chunk of image examples in slices within one predict call's image budgets: bytes counted as predict counts
 * them (from the base64 length), pixels at their worst (every image at the per-image limit), so no slice is refused
 * for what a predict call of its examples would take. An example over the per-call bytes alone is its own slice (and
 * refused as predict refuses it).
 */
export function imageSlices<T extends DatasetRow>(
  chunk: T[],
  limits: Pick<InputLimits, 'maxImagePixels' | 'maxImagePixelsPerCall' | 'maxImageBytesPerCall'>,
): T[][] {
  const perSlice = Math.max(1, Math.floor(limits.maxImagePixelsPerCall / limits.maxImagePixels));
  const slices: T[][] = [];
  let slice: T[] = [];
  let bytes = 0;
  for (const row of chunk) {
    const size = typeof row.input === 'string' ? Math.ceil((row.input.length * 3) / 4) : 0;
    if (slice.length > 0 && (slice.length >= perSlice || bytes + size > limits.maxImageBytesPerCall)) {
      slices.push(slice);
      slice = [];
      bytes = 0;
    }
    slice.push(row);
    bytes += size;
  }
  if (slice.length > 0) slices.push(slice);
  return slices;
}

/**
 * What a failed run's message adds when it stopped midway: how many examples each version evaluated (and, for a
 * licensee, was billed for); a comparison's versions can differ by the chunk the second one failed on.
 */
function partialNote(run: Run): string {
  const counts = run.targets.map((t) => t.predicted.length);
  const { rows } = run.dataset;
  if (counts.every((n) => n === 0 || n === rows)) return '';
  const billed = run.metered ? ' and billed' : '';
  if (counts.every((n) => n === counts[0])) {
    return `; the report is partial: ${counts[0]} of ${rows} examples were evaluated${billed}`;
  }
  const each = run.targets.map((t, i) => `${t.version.version}: ${counts[i]}`).join(', ');
  return `; the reports are partial: of ${rows} examples, each version evaluated${billed} ${each}`;
}

/** Where two versions' predicted classes differ, over the first `trueClasses.length` examples. */
export function disagreement(trueClasses: readonly number[], a: readonly number[], b: readonly number[]): Disagreement {
  const result: Disagreement = {
    examples: trueClasses.length,
    differing: 0,
    aRightBWrong: 0,
    bRightAWrong: 0,
    differingIndices: [],
    aRightBWrongIndices: [],
    bRightAWrongIndices: [],
  };
  const note = (list: number[], index: number) => {
    if (list.length < MAX_DISAGREEMENT_INDICES) list.push(index);
  };
  trueClasses.forEach((truth, i) => {
    if (a[i] === b[i]) return;
    result.differing++;
    note(result.differingIndices, i);
    if (a[i] === truth) {
      result.aRightBWrong++;
      note(result.aRightBWrongIndices, i);
    } else if (b[i] === truth) {
      result.bRightAWrong++;
      note(result.bRightAWrongIndices, i);
    }
  });
  return result;
}
