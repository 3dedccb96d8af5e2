// The product side of watermarking: owner marks at publish time (with a fidelity check), per-licensee
// fingerprinted copies for licensed downloads, and verification of a suspect artifact. Keys are derived from
// the application secret and never leave the server; the unmarked upload is kept (never served) because
// decoding is non-blind.
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Actor } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Prisma } from '../db/database.js';
import type { ModelVersion } from '../generated/prisma/client.js';
import type { InferenceEngine, TensorInput } from '../inference/engine.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { artifactHash } from '../models/artifact-service.js';
import type { StoredArtifact } from '../models/artifact-storage.js';
import { isAdmin } from '../models/model-policy.js';
import type { Signature } from '../models/signature.js';
import type { SecretBox } from '../security/secret-box.js';
import { BadUserInputError, RateLimitedError } from '../server/errors.js';
import { Piscina } from 'piscina';
import { siblingWorkerFile, workerExecArgv } from '../server/worker-threads.js';
import {
  decide,
  deriveMarkKey,
  selectMarkTensor,
  type DecodeResult,
  type MarkEvidence,
  type MarkKey,
  type MarkReport,
  type WeightsArtifact,
} from './index.js';
import type { WatermarkRefusal, WatermarkTask } from './worker.js';

type Marked = WeightsArtifact & { report: MarkReport };
const isRefusal = (value: unknown): value is WatermarkRefusal =>
  typeof value === 'object' && value !== null && 'refused' in value;

/** Marked predictions must agree with the original's on at least this share of probe inputs. */
export const MIN_AGREEMENT = 0.995;
/** Largest accuracy loss the mark may cause on the owner's evaluation data (0.5 percentage points). */
export const MAX_ACCURACY_DROP = 0.005;
const VERIFY_ATTEMPTS_PER_HOUR = 30;

export interface WatermarkReport {
  marked: boolean;
  tensor?: string;
  margin?: number;
  relativeChange?: number;
  maxChange?: number;
  bits?: number;
  /** Share of evaluation examples whose prediction (top label, or values within 1e-3) the mark leaves unchanged. */
  agreement?: number;
  accuracyBefore?: number;
  accuracyAfter?: number;
  evaluationSamples?: number;
}

/** The owner's labelled examples, encoded as the model takes them. */
export interface EvaluationData {
  tensor: TensorInput;
  labels: number[] | null;
}

export interface WatermarkMatch {
  model: string;
  version: string;
  kind: 'OWNER' | 'LICENSEE';
  contract: string | null;
  matchedBits: number;
  totalBits: number;
  pValue: number;
}

function parse(stored: StoredArtifact): WeightsArtifact {
  return { modelJson: JSON.parse(stored.modelJson.toString('utf8')) as unknown, weights: stored.weights };
}

function toStored(artifact: WeightsArtifact): StoredArtifact {
  return { modelJson: Buffer.from(JSON.stringify(artifact.modelJson)), weights: Buffer.from(artifact.weights) };
}

const argmax = (row: Float32Array) => row.indexOf(Math.max(...row));
const rows = (values: Float32Array, count: number) => {
  const width = values.length / count;
  return Array.from({ length: count }, (_, i) => values.subarray(i * width, (i + 1) * width));
};

function agreement(signature: Signature, a: Float32Array, b: Float32Array, count: number): number {
  const before = rows(a, count);
  const after = rows(b, count);
  const same = before.filter((rowA, i) => {
    const rowB = after[i]!;
    return signature.output.kind === 'classification'
      ? argmax(rowA) === argmax(rowB)
      : rowA.every((v, j) => Math.abs(v - rowB[j]!) <= 1e-3 * Math.max(1, Math.abs(v)));
  }).length;
  return same / count;
}

function accuracy(values: Float32Array, labels: number[]): number {
  return rows(values, labels.length).filter((row, i) => argmax(row) === labels[i]).length / labels.length;
}

export class WatermarkService {
  readonly #secret: Buffer;
  readonly #verifyLimiter: RateLimiterPostgres;
  // Marking and decoding are CPU-bound (up to ~0.7 s): one worker thread, started on first use.
  readonly #pool: Piscina;

  constructor(
    private readonly prisma: Prisma,
    pool: pg.Pool,
    private readonly artifacts: ArtifactService,
    private readonly engine: InferenceEngine,
    private readonly audit: AuditService,
    secrets: SecretBox,
  ) {
    this.#secret = secrets.deriveKey('watermark');
    const workerFile = siblingWorkerFile(import.meta.url, 'worker');
    this.#pool = new Piscina({
      filename: workerFile.href,
      minThreads: 0,
      maxThreads: 1,
      idleTimeout: 60_000,
      execArgv: workerExecArgv(workerFile),
    });
    this.#verifyLimiter = new RateLimiterPostgres({
      storeClient: pool,
      storeType: 'pool',
      tableName: 'rate_limits',
      tableCreated: true,
      keyPrefix: 'watermark_verify',
      points: VERIFY_ATTEMPTS_PER_HOUR,
      duration: 3600,
    });
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }

  #mark(task: Extract<WatermarkTask, { kind: 'mark' }>): Promise<Marked | WatermarkRefusal> {
    return this.#pool.run(task) as Promise<Marked | WatermarkRefusal>;
  }

  #decode(task: Extract<WatermarkTask, { kind: 'decode' }>): Promise<DecodeResult[] | WatermarkRefusal> {
    return this.#pool.run(task) as Promise<DecodeResult[] | WatermarkRefusal>;
  }

  ownerKey(versionId: string): MarkKey {
    return deriveMarkKey(this.#secret, 'owner', versionId);
  }

  licenseeKey(contractId: string): MarkKey {
    return deriveMarkKey(this.#secret, 'licensee', contractId);
  }

  /**
   * Marks an upload for a new version. With evaluation data, the mark must keep ≥ 99.5% of predictions and
   * lose ≤ 0.5 accuracy points on it, else BAD_USER_INPUT (the owner may opt out). Returns the served
   * artifact's hash and the report.
   */
  async markForPublish(
    versionId: string,
    originalSha256: string,
    signature: Signature,
    evaluation: EvaluationData | null,
  ) {
    const original = parse(await this.artifacts.read(originalSha256));
    const marked = await this.#mark({ kind: 'mark', artifact: original, key: this.ownerKey(versionId) });
    if (isRefusal(marked)) {
      throw new BadUserInputError(
        `This model cannot be watermarked: ${marked.refused}. Publish with watermark: false to opt out`,
        'input.watermark',
      );
    }
    const stored = toStored(marked);
    const servedSha256 = artifactHash(stored);
    const report: WatermarkReport = {
      marked: true,
      tensor: marked.report.tensor,
      margin: marked.report.margin,
      relativeChange: marked.report.relativeChange,
      maxChange: marked.report.maxChange,
      bits: 256,
    };
    if (evaluation) {
      const count = evaluation.tensor.shape[0]!;
      const [before, after] = await Promise.all([
        this.engine.predict(this.artifacts.modelRef(originalSha256), evaluation.tensor),
        this.engine.predict({ key: servedSha256, load: async () => marked }, evaluation.tensor),
      ]);
      report.evaluationSamples = count;
      report.agreement = agreement(signature, before.data, after.data, count);
      if (evaluation.labels) {
        report.accuracyBefore = accuracy(before.data, evaluation.labels);
        report.accuracyAfter = accuracy(after.data, evaluation.labels);
      }
      const drop = (report.accuracyBefore ?? 0) - (report.accuracyAfter ?? 0);
      if (report.agreement < MIN_AGREEMENT || drop > MAX_ACCURACY_DROP) {
        throw new BadUserInputError(
          `Watermarking would change ${(100 * (1 - report.agreement)).toFixed(1)}% of predictions and cost ${(100 * drop).toFixed(2)} accuracy points on your evaluation data (budget 0.5% and 0.5 points); publish with watermark: false to opt out`,
          'input.watermark',
        );
      }
    }
    await this.artifacts.store(servedSha256, stored);
    return { servedSha256, report };
  }

  /** A contract's fingerprinted copy of a version (built at its first download, then reused). */
  async licenseeCopy(contractId: string, version: ModelVersion, originalSha256: string): Promise<string> {
    const existing = await this.prisma.licenseeCopy.findUnique({
      where: { contractId_versionId: { contractId, versionId: version.id } },
    });
    if (existing) return existing.sha256;
    if (!version.servedSha256) return originalSha256;
    const original = parse(await this.artifacts.read(originalSha256));
    const served = parse(await this.artifacts.read(version.servedSha256));
    const copy = await this.#mark({
      kind: 'mark',
      artifact: served,
      key: this.licenseeKey(contractId),
      reference: original,
      preserve: [this.ownerKey(version.id)],
    });
    if (isRefusal(copy)) throw new Error(`cannot fingerprint version ${version.id}: ${copy.refused}`);
    const stored = toStored(copy);
    const sha256 = artifactHash(stored);
    await this.artifacts.store(sha256, stored);
    await this.prisma.licenseeCopy.createMany({
      data: [{ contractId, versionId: version.id, sha256 }],
      skipDuplicates: true,
    });
    return sha256;
  }

  /**
   * Tests a suspect against every marked version the caller may test (owners: their models; admins: all) and
   * every key issued for those versions, with the decision threshold corrected for the number of keys tried.
   */
  async verify(actor: Actor, artifactId: string) {
    const userId = requireUserId(actor.principal);
    try {
      await this.#verifyLimiter.consume(userId);
    } catch (error) {
      if (error instanceof RateLimiterRes)
        throw new RateLimitedError('Too many watermark verifications; try again later', error.msBeforeNext / 1000);
      throw error;
    }
    const upload = await this.artifacts.findUsable(actor, artifactId);
    const suspect = parse(await this.artifacts.read(upload.sha256));
    let suspectTarget;
    try {
      suspectTarget = selectMarkTensor(suspect.modelJson);
    } catch {
      suspectTarget = null;
    }
    const versions = suspectTarget
      ? await this.prisma.modelVersion.findMany({
          where: { servedSha256: { not: null }, ...(isAdmin(actor.principal) ? {} : { model: { ownerId: userId } }) },
          include: { model: { select: { slug: true } }, artifact: { select: { sha256: true } } },
        })
      : [];
    const evidence: (WatermarkMatch & MarkEvidence)[] = [];
    let keysTried = 0;
    for (const version of versions) {
      const original = parse(await this.artifacts.read(version.artifact.sha256));
      const target = selectMarkTensor(original.modelJson);
      if (target.size !== suspectTarget!.size) continue;
      const copies = await this.prisma.licenseeCopy.findMany({ where: { versionId: version.id } });
      const keys = [this.ownerKey(version.id), ...copies.map((c) => this.licenseeKey(c.contractId))];
      const results = await this.#decode({ kind: 'decode', suspect, original, keys });
      if (isRefusal(results)) continue; // a different architecture: nothing to read
      keysTried += keys.length;
      results.forEach((result, i) => {
        evidence.push({
          ...result,
          model: version.model.slug,
          version: version.version,
          kind: i === 0 ? 'OWNER' : 'LICENSEE',
          contract: i === 0 ? null : copies[i - 1]!.contractId,
          matchedBits: result.matchedBits,
          totalBits: result.totalBits,
          pValue: result.pValue,
        });
      });
    }
    const verdicts = keysTried ? decide(evidence, keysTried) : [];
    const matches = verdicts
      .filter((v) => v.verdict === 'MATCH')
      .map(({ model, version, kind, contract, matchedBits, totalBits, pValue }) => ({
        model,
        version,
        kind,
        contract,
        matchedBits,
        totalBits,
        pValue,
      }));
    await this.audit.record(actor, {
      action: AuditAction.WATERMARK_VERIFIED,
      targetType: 'Artifact',
      targetId: artifactId,
      details: {
        keysTried,
        matches: matches.map((m) => `${m.model}@${m.version}:${m.kind}${m.contract ? `:${m.contract}` : ''}`),
      },
    });
    return { verdict: matches.length ? ('MATCH' as const) : ('NO_MATCH' as const), matches, keysTried };
  }
}
