// The product side of watermarking: owner marks at publish time (with a fidelity check), per-licensee
// fingerprinted copies for licensed downloads, and verification of a suspect artifact. Keys are derived from
// the application secret and never leave the server; the unmarked upload is kept (never served) because
// decoding is non-blind.
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Actor } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Contract, ModelVersion, Prisma as P } from '../generated/prisma/client.js';
import type { InferenceEngine, TensorInput } from '../inference/engine.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { artifactHash } from '../models/artifact-service.js';
import type { StoredArtifact } from '../models/artifact-storage.js';
import { canManage, isAdmin } from '../models/model-policy.js';
import { isNamed, type Signature } from '../models/signature.js';
import type { DerivedVariant, VariantRow, VariantStore } from '../models/variants.js';
import type { SecretBox } from '../security/secret-box.js';
import { BadUserInputError, ModelError, RateLimitedError } from '../server/errors.js';
import type { Piscina } from 'piscina';
import { occasionalWorker } from '../server/worker-threads.js';
import {
  capacityThreshold,
  chooseCarriers,
  decide,
  deriveMarkKey,
  fitCapacity,
  KEY_BUDGET,
  MARK_BITS,
  MAX_SHAPED_INPUTS,
  MIN_CAPACITY,
  MIN_MARK_WEIGHTS,
  selectMarkTensor,
  slackFromSensitivity,
  type CapacityTrial,
  type InputStatistics,
  type MarkLayout,
  type MarkTarget,
  type DecodeResult,
  type MarkEvidence,
  type MarkKey,
  type MarkReport,
  type WeightsArtifact,
} from './index.js';
import type { WatermarkRefusal, WatermarkTask } from './worker.js';

type Marked = WeightsArtifact & { report: MarkReport };
/** A marked artifact, ready to store, and what it cost. */
interface Candidate {
  marked: Marked;
  stored: StoredArtifact;
  report: WatermarkReport;
}

/**
 * What an owner-marked variant was derived with (its `params`): the key's role, the layout when it is not the
 * default one, and the shape of the calibration kept for a shaped mark.
 */
interface OwnerMarkParams {
  key: 'owner';
  layout?: MarkLayout;
  calibration?: { samples: number; inputs: number };
  optedOut?: true;
}

/** The owner-marked variant of a version whose owner opted out of marking: no bytes, and the report says so. */
export const OPTED_OUT_MARK: DerivedVariant = {
  kind: 'OWNER_MARKED',
  params: { key: 'owner', optedOut: true } satisfies OwnerMarkParams,
  artifact: null,
  report: { marked: false, optedOut: true },
  served: false,
};
const isRefusal = (value: unknown): value is WatermarkRefusal =>
  typeof value === 'object' && value !== null && 'refused' in value;

/** Marked predictions must agree with the original's on at least this share of probe inputs. */
export const MIN_AGREEMENT = 0.995;
/** Largest accuracy loss the mark may cause on the owner's evaluation data (0.5 percentage points). */
export const MAX_ACCURACY_DROP = 0.005;
const VERIFY_ATTEMPTS_PER_HOUR = 30;
/** Fewest examples a mark is shaped with; as many again check it. */
const MIN_CALIBRATION_EXAMPLES = 100;

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
  /** Weights in the marked tensor: what verification looks versions up by. */
  size?: number;
  /** Evaluation examples the mark was shaped with (then checked on the others); null for a least-norm mark. */
  shapedWith?: number | null;
  /** Tensors carrying the mark; absent in versions marked before capacities existed (then `tensor` alone). */
  carriers?: string[];
  /** Per carrier, how freely it was changed (MarkLayout.slack); fitted marks only. */
  slack?: number[];
  /**
   * Fewest matched bits of `bits` that verify as MATCH however many keys a verification tries (at most
   * KEY_BUDGET), and the exact chance that one key matches that many by accident.
   */
  threshold?: number;
  falsePositiveRate?: number;
  /** Fitted marks: agreement of a trial licensee copy (owner mark and a fingerprint), held to the same budget. */
  fingerprintAgreement?: number;
}

/**
 * The report as the API shows it: versions marked before capacities existed get their implied carriers,
 * and every version the threshold verification applies now (older reports stored it for one key).
 */
export function describeMark(report: WatermarkReport): WatermarkReport {
  if (!report.marked || report.bits === undefined) return report;
  return {
    ...report,
    ...capacityThreshold(report.bits),
    carriers: report.carriers ?? (report.tensor ? [report.tensor] : undefined),
  };
}

/** What a version's marks are made with; undefined for the default layout of older versions. */
function layoutOf(mark: Pick<VariantRow, 'params'>): MarkLayout | undefined {
  return (mark.params as unknown as OwnerMarkParams).layout;
}

/** The owner's labelled examples, encoded as the model takes them. */
export interface EvaluationData {
  tensor: TensorInput;
  labels: number[] | null;
}

/** One artifact's reading of an owner mark (ownerMarkReadings). */
export interface OwnerMarkReading {
  matchedBits: number;
  totalBits: number;
  /** Fewest matched bits that verify as MATCH for up to KEY_BUDGET keys. */
  threshold: number;
  holds: boolean;
}

export interface WatermarkMatch {
  model: string;
  version: string;
  /** The version whose mark was found. */
  modelVersion: ModelVersion;
  kind: 'OWNER' | 'LICENSEE';
  contract: string | null;
  /** The contract whose copy leaked (LICENSEE marks), when the caller may see it. */
  leakedContract: Contract | null;
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
    return !isNamed(signature) && signature.output.kind === 'classification'
      ? argmax(rowA) === argmax(rowB)
      : rowA.every((v, j) => Math.abs(v - rowB[j]!) <= 1e-3 * Math.max(1, Math.abs(v)));
  }).length;
  return same / count;
}

function accuracy(values: Float32Array, labels: number[]): number {
  return rows(values, labels.length).filter((row, i) => argmax(row) === labels[i]).length / labels.length;
}

const accuracyDrop = (report: WatermarkReport) => (report.accuracyBefore ?? 0) - (report.accuracyAfter ?? 0);
// The tolerance keeps a drop of exactly 0.5 points (2 of 400 examples) within budget despite rounding.
const withinBudget = (report: WatermarkReport) =>
  (report.agreement ?? 1) >= MIN_AGREEMENT && accuracyDrop(report) <= MAX_ACCURACY_DROP + 1e-9;

/** A candidate mark's measurements, as the refusal reports them. */
function measurements(report: WatermarkReport) {
  return {
    bits: report.bits,
    carriers: report.carriers ?? [report.tensor],
    agreement: report.agreement,
    accuracyDrop: accuracyDrop(report),
    evaluationSamples: report.evaluationSamples,
    ...(report.fingerprintAgreement !== undefined ? { fingerprintAgreement: report.fingerprintAgreement } : {}),
    ...(report.shapedWith ? { shapedWith: report.shapedWith } : {}),
  };
}

function overBudget(plain: WatermarkReport, shaped?: WatermarkReport, fitted?: WatermarkReport): BadUserInputError {
  const cost = (report: WatermarkReport) =>
    `change ${(100 * (1 - report.agreement!)).toFixed(1)}% of predictions and cost ${(100 * accuracyDrop(report)).toFixed(2)} accuracy points on ${report.evaluationSamples} examples`;
  const shapedPart = shaped
    ? `; shaped on ${shaped.shapedWith} of your examples, it would ${cost(shaped)} it had not seen`
    : '';
  const fittedPart = fitted
    ? `; even with ${fitted.bits} bits (the fewest that keep false matches below 1e-12 over ${KEY_BUDGET} keys) on ${fitted.carriers!.join(', ')}, it would ${cost(fitted)}` +
      (fitted.fingerprintAgreement !== undefined
        ? ` (a licensee copy: ${(100 * (1 - fitted.fingerprintAgreement)).toFixed(1)}% of predictions)`
        : '')
    : '';
  return new BadUserInputError(
    `Watermarking would ${cost(plain)} of your evaluation data${shapedPart}${fittedPart} (budget 0.5% and 0.5 points). Give more evaluation examples, or publish with watermark: false to opt out`,
    'input.watermark',
    {
      measurements: {
        leastNorm: measurements(plain),
        ...(shaped ? { shaped: measurements(shaped) } : {}),
        ...(fitted ? { fitted: measurements(fitted) } : {}),
      },
    },
  );
}

/** The examples at even (parity 0) or odd (parity 1) positions. */
function everyOther({ tensor, labels }: EvaluationData, parity: number): EvaluationData {
  const [count, ...row] = tensor.shape as [number, ...number[]];
  const width = tensor.data.length / count;
  const picked = Array.from({ length: Math.floor((count - parity + 1) / 2) }, (_, i) => 2 * i + parity);
  const data =
    tensor.dtype === 'float32' ? new Float32Array(picked.length * width) : new Int32Array(picked.length * width);
  picked.forEach((index, i) => data.set(tensor.data.subarray(index * width, (index + 1) * width), i * width));
  return {
    tensor: { data, shape: [picked.length, ...row], dtype: tensor.dtype } as TensorInput,
    labels: labels ? picked.map((index) => labels[index]!) : null,
  };
}

/** A shaped mark's statistics as kept: float32 little-endian, the mean then the covariance. */
function calibrationBytes({ mean, covariance }: InputStatistics): Uint8Array<ArrayBuffer> {
  const floats = new Float32Array(mean.length + covariance.length);
  floats.set(mean);
  floats.set(covariance, mean.length);
  return new Uint8Array(floats.buffer);
}

/** The owner-marked variant a candidate makes: served, with what it was marked with and what it cost. */
function ownerMarked({ stored, report }: Candidate, calibration?: InputStatistics): DerivedVariant {
  const params: OwnerMarkParams = {
    key: 'owner',
    ...(report.carriers && report.bits !== undefined
      ? { layout: { carriers: report.carriers, bits: report.bits, ...(report.slack ? { slack: report.slack } : {}) } }
      : {}),
    ...(calibration ? { calibration: { samples: calibration.samples, inputs: calibration.inputs } } : {}),
  };
  return {
    kind: 'OWNER_MARKED',
    params: params as unknown as P.InputJsonObject,
    artifact: stored,
    report: report as unknown as P.InputJsonObject,
    served: true,
    ...(calibration ? { calibration: calibrationBytes(calibration) } : {}),
  };
}

export class WatermarkService {
  readonly #secret: Buffer;
  readonly #verifyLimiter: RateLimiterPostgres;
  // Marking and decoding are CPU-bound (up to ~0.7 s): one worker thread, started on first use.
  readonly #pool: Piscina;

  constructor(
    pool: pg.Pool,
    private readonly artifacts: ArtifactService,
    private readonly variants: VariantStore,
    private readonly engine: InferenceEngine,
    private readonly audit: AuditService,
    secrets: SecretBox,
  ) {
    this.#secret = secrets.deriveKey('watermark');
    this.#pool = occasionalWorker(import.meta.url, 'worker');
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

  #statistics(features: Float32Array, samples: number): Promise<InputStatistics> {
    return this.#pool.run({
      kind: 'statistics',
      features,
      samples,
    } satisfies WatermarkTask) as Promise<InputStatistics>;
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
   * lose ≤ 0.5 accuracy points on it, else BAD_USER_INPUT (the owner may opt out). When the least-norm mark
   * fails that budget on a Dense kernel, a mark shaped on half of the examples (shaping.ts) is checked on
   * the other half; when that fails too (or cannot be made), the mark is fitted: fewer bits, on the
   * tensors with most slack (#fitted). Returns the owner-marked variant (served), to commit with the version:
   * nothing is stored here.
   */
  async markForPublish(
    versionId: string,
    originalSha256: string,
    signature: Signature,
    evaluation: EvaluationData | null,
  ): Promise<DerivedVariant> {
    const original = parse(await this.artifacts.read(originalSha256));
    const plain = await this.#markAndMeasure(versionId, originalSha256, original, signature, evaluation);
    if (!evaluation || withinBudget(plain.report)) return ownerMarked(plain);
    const shaped = await this.#shaped(versionId, originalSha256, original, signature, evaluation);
    if (shaped && withinBudget(shaped.candidate.report)) return ownerMarked(shaped.candidate, shaped.calibration);
    const fitted = await this.#fitted(versionId, originalSha256, original, signature, evaluation);
    if (!fitted.best) throw overBudget(plain.report, shaped?.candidate.report, fitted.smallest);
    return ownerMarked(fitted.best);
  }

  /** A mark shaped on the even-numbered examples and checked on the odd-numbered ones; null where shaping does not apply. */
  async #shaped(
    versionId: string,
    originalSha256: string,
    original: WeightsArtifact,
    signature: Signature,
    evaluation: EvaluationData,
  ): Promise<{ candidate: Candidate; calibration: InputStatistics } | null> {
    const target = selectMarkTensor(original.modelJson); // the worker has already accepted the model
    const [inputs = 0] = target.shape;
    const count = evaluation.tensor.shape[0]!;
    const shapeable = target.denseLayer && inputs <= MAX_SHAPED_INPUTS && count >= 2 * MIN_CALIBRATION_EXAMPLES;
    if (!shapeable) return null;
    const [calibrationHalf, checkHalf] = [0, 1].map((parity) => everyOther(evaluation, parity)) as [
      EvaluationData,
      EvaluationData,
    ];
    const features = await this.engine.layerInputs(
      this.artifacts.modelRef(originalSha256),
      target.denseLayer!,
      calibrationHalf.tensor,
    );
    const samples = calibrationHalf.tensor.shape[0]!;
    // A Dense layer over a sequence sees several input rows per example; shaping covers one row per example.
    if (features.data.length !== samples * inputs) return null;
    const calibration = await this.#statistics(features.data, samples);
    const candidate = await this.#markAndMeasure(versionId, originalSha256, original, signature, checkHalf, {
      shaping: calibration,
    });
    return { candidate, calibration };
  }

  /**
   * The largest capacity, down to MIN_CAPACITY bits, at which a least-norm mark on the markable tensors
   * with most slack (measured, see chooseCarriers) keeps the budget, and so does a trial licensee copy on
   * top of it: fingerprints of the version use the same layout. When no capacity fits both, the largest
   * one tried at which the owner's mark alone fits. `smallest` is the MIN_CAPACITY report when even
   * that does not fit.
   */
  async #fitted(
    versionId: string,
    originalSha256: string,
    original: WeightsArtifact,
    signature: Signature,
    evaluation: EvaluationData,
  ): Promise<{ best: Candidate | null; smallest?: WatermarkReport }> {
    const found = (await this.#pool.run({ kind: 'markable', artifact: original } satisfies WatermarkTask)) as
      MarkTarget[] | WatermarkRefusal;
    // A refusal cannot happen here (the model was marked already); no candidates then refuse in the trials.
    const markable = isRefusal(found) ? [] : found.filter((target) => target.size >= MIN_CAPACITY);
    let carriers = markable.map((target) => target.name);
    let slack: number[] | undefined;
    if (carriers.length > 1) {
      const sensitivities = await this.#sensitivities(versionId, originalSha256, original, carriers, evaluation);
      // A tensor that cannot carry a mark alone (too coarsely quantized, too small to solve) is left out;
      // when none can, the trials below try them all together and refuse with the reason.
      const usable = markable.flatMap((target, i) => {
        const sensitivity = sensitivities[i];
        return sensitivity === null || sensitivity === undefined ? [] : [{ target, sensitivity }];
      });
      if (usable.length > 0) {
        const measured = slackFromSensitivity(usable.map((u) => u.sensitivity));
        const chosen = chooseCarriers(
          usable.map((u) => u.target.size),
          measured,
          MIN_MARK_WEIGHTS,
        );
        carriers = chosen.map((i) => usable[i]!.target.name);
        slack = chosen.length > 1 ? chosen.map((i) => measured[i]!) : undefined;
      }
    }
    const probeKey = deriveMarkKey(this.#secret, 'licensee', `fidelity-probe/${versionId}`);
    const trial = async (bits: number): Promise<CapacityTrial<Candidate>> => {
      const layout: MarkLayout = { carriers, bits, ...(slack ? { slack } : {}) };
      const owner = await this.#markAndMeasure(versionId, originalSha256, original, signature, evaluation, { layout });
      if (!withinBudget(owner.report)) return { bits, fits: false, result: owner };
      const copy = await this.#markOrRefuse({
        kind: 'mark',
        artifact: owner.marked,
        key: probeKey,
        reference: original,
        preserve: [this.ownerKey(versionId)],
        layout,
      });
      const copyReport = await this.#measure(originalSha256, copy, signature, evaluation);
      owner.report.fingerprintAgreement = copyReport.agreement;
      return { bits, fits: withinBudget(copyReport), result: owner };
    };
    const { best, tried } = await fitCapacity(trial, MIN_CAPACITY, MARK_BITS);
    // When every capacity tried breaks the budget with a fingerprint on top, the owner's mark alone decides,
    // as for least-norm and shaped marks: the most bits tried at which it fits. fingerprintAgreement tells
    // the owner what licensee copies cost.
    const ownerOnly = tried.filter((t) => withinBudget(t.result.report)).sort((a, b) => b.bits - a.bits)[0];
    const smallest = tried.find((t) => t.bits === MIN_CAPACITY)?.result.report;
    return { best: (best ?? ownerOnly)?.result ?? null, smallest };
  }

  /**
   * How sensitive the outputs are to each carrier: the mean squared output change on the evaluation
   * examples that a MIN_CAPACITY owner mark on that tensor alone causes (slackFromSensitivity turns it into
   * slack); null for a tensor that cannot carry such a mark alone.
   */
  async #sensitivities(
    versionId: string,
    originalSha256: string,
    original: WeightsArtifact,
    carriers: readonly string[],
    evaluation: EvaluationData,
  ): Promise<(number | null)[]> {
    const before = await this.engine.predict(this.artifacts.modelRef(originalSha256), evaluation.tensor);
    const sensitivities: (number | null)[] = [];
    for (const name of carriers) {
      const marked = await this.#mark({
        kind: 'mark',
        artifact: original,
        key: this.ownerKey(versionId),
        layout: { carriers: [name], bits: MIN_CAPACITY },
      });
      if (isRefusal(marked)) {
        sensitivities.push(null);
        continue;
      }
      const after = await this.engine.predict(
        { key: artifactHash(toStored(marked)), load: async () => marked },
        evaluation.tensor,
      );
      let squares = 0;
      for (let i = 0; i < after.data.length; i++) squares += (after.data[i]! - before.data[i]!) ** 2;
      sensitivities.push(squares / after.data.length);
    }
    return sensitivities;
  }

  /** The statistics a shaped mark was made with, which its version's licensee copies are shaped with too. */
  async #calibration(mark: VariantRow): Promise<InputStatistics | undefined> {
    const shape = (mark.params as unknown as OwnerMarkParams).calibration;
    const bytes = shape ? await this.variants.calibration(mark.id) : null;
    if (!shape || !bytes) return undefined;
    const floats = Float64Array.from(new Float32Array(new Uint8Array(bytes).buffer, 0, bytes.byteLength / 4));
    return {
      samples: shape.samples,
      inputs: shape.inputs,
      mean: floats.subarray(0, shape.inputs),
      covariance: floats.subarray(shape.inputs),
    };
  }

  async #markOrRefuse(task: Extract<WatermarkTask, { kind: 'mark' }>): Promise<Marked> {
    const marked = await this.#mark(task);
    if (isRefusal(marked)) {
      throw new BadUserInputError(
        `This model cannot be watermarked: ${marked.refused}. Publish with watermark: false to opt out`,
        'input.watermark',
      );
    }
    return marked;
  }

  /** Marks with the owner key and scores the marked copy against the original on `evaluation`, if any. */
  async #markAndMeasure(
    versionId: string,
    originalSha256: string,
    original: WeightsArtifact,
    signature: Signature,
    evaluation: EvaluationData | null,
    { shaping, layout }: { shaping?: InputStatistics; layout?: MarkLayout } = {},
  ): Promise<Candidate> {
    const marked = await this.#markOrRefuse({
      kind: 'mark',
      artifact: original,
      key: this.ownerKey(versionId),
      shaping,
      layout,
    });
    const report: WatermarkReport = {
      marked: true,
      tensor: marked.report.tensor,
      carriers: marked.report.carriers,
      margin: marked.report.margin,
      relativeChange: marked.report.relativeChange,
      maxChange: marked.report.maxChange,
      bits: marked.report.bits,
      ...capacityThreshold(marked.report.bits),
      size: marked.report.size,
      shapedWith: marked.report.shapedWith,
      ...(layout?.slack ? { slack: layout.slack } : {}),
      ...(evaluation ? await this.#measure(originalSha256, marked, signature, evaluation) : {}),
    };
    return { marked, stored: toStored(marked), report };
  }

  /** Agreement with the original (and accuracies, with labels) of a marked copy on `evaluation`. */
  async #measure(
    originalSha256: string,
    marked: Marked,
    signature: Signature,
    evaluation: EvaluationData,
  ): Promise<WatermarkReport> {
    const count = evaluation.tensor.shape[0]!;
    const [before, after] = await Promise.all([
      this.engine.predict(this.artifacts.modelRef(originalSha256), evaluation.tensor),
      this.engine.predict({ key: artifactHash(toStored(marked)), load: async () => marked }, evaluation.tensor),
    ]);
    const report: WatermarkReport = {
      marked: true,
      evaluationSamples: count,
      agreement: agreement(signature, before.data, after.data, count),
    };
    if (evaluation.labels) {
      report.accuracyBefore = accuracy(before.data, evaluation.labels);
      report.accuracyAfter = accuracy(after.data, evaluation.labels);
    }
    return report;
  }

  /**
   * A contract's fingerprinted copy of a version (built at its first download, then reused): the weights the
   * version serves with the contract's mark on top, keeping the owner mark of its lineage (an optimised version's
   * quantised weights are marked in their own quantisation); a version not marked serves its own bytes to everyone.
   */
  async licenseeCopy(
    contractId: string,
    version: { id: string; artifactId: string; derivedFromId: string | null },
  ): Promise<string> {
    const existing = await this.variants.licenseeCopy(contractId, version.id);
    if (existing) return existing.sha256!;
    const { markedVersionId, mark } = await this.variants.ownerMarkOf(version);
    if (!mark) return this.variants.servedSha256(version);
    // Derived versions keep their parent's upload: the unmarked reference of the whole lineage.
    const original = parse(await this.artifacts.read(await this.artifacts.sha256Of(version.artifactId)));
    const served = parse(await this.artifacts.read(await this.variants.servedSha256(version)));
    const layout = layoutOf(mark);
    const copy = await this.#mark({
      kind: 'mark',
      artifact: served,
      key: this.licenseeKey(contractId),
      reference: original,
      preserve: [this.ownerKey(markedVersionId)],
      shaping: await this.#calibration(mark),
      layout,
    });
    if (isRefusal(copy)) {
      throw new ModelError(`Version cannot be fingerprinted for download (${copy.refused}); nothing was downloaded`);
    }
    return this.variants.saveLicenseeCopy(contractId, version.id, toStored(copy), {
      key: 'licensee',
      ...(markedVersionId !== version.id ? { markedVersion: markedVersionId } : {}),
      ...(layout ? { layout: layout as unknown as P.InputJsonObject } : {}),
    });
  }

  /**
   * The version's owner mark as each artifact carries it (decoded against the unmarked upload, in the layout of
   * `mark`, the version's OWNER_MARKED variant), and whether it verifies: at least the threshold that holds
   * however many keys a verification tries. For checking that a derived artifact kept the mark.
   */
  async ownerMarkReadings(
    versionId: string,
    originalSha256: string,
    mark: Pick<VariantRow, 'params'>,
    suspects: WeightsArtifact[],
  ): Promise<OwnerMarkReading[]> {
    const original = parse(await this.artifacts.read(originalSha256));
    const layout = layoutOf(mark);
    const readings: OwnerMarkReading[] = [];
    for (const suspect of suspects) {
      const results = await this.#decode({
        kind: 'decode',
        suspect,
        original,
        keys: [this.ownerKey(versionId)],
        layout,
      });
      // A refusal: the suspect's weights do not fit the mark's carriers, so no bit can be read.
      const matchedBits = isRefusal(results) ? 0 : results[0]!.matchedBits;
      const totalBits = isRefusal(results) ? (layout?.bits ?? MARK_BITS) : results[0]!.totalBits;
      const { threshold } = capacityThreshold(totalBits);
      readings.push({ matchedBits, totalBits, threshold, holds: matchedBits >= threshold });
    }
    return readings;
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
        throw new RateLimitedError('Too many watermark verifications', error.msBeforeNext / 1000);
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
    // Only versions whose marked tensor has the suspect's size can be read from it; filtering on the
    // report's `size` in the query leaves the originals of every other version unread.
    const marks = suspectTarget
      ? await this.variants.ownerMarksWhere('size', suspectTarget.size, isAdmin(actor.principal) ? null : userId)
      : [];
    const versions = marks.map((mark) => ({ ...mark.version, layout: layoutOf(mark) }));
    const allCopies = await this.variants.licenseeKeysOf(versions.map((v) => v.id));
    // Fitted marks are sized for at most KEY_BUDGET keys (capacity.ts): past it, Bonferroni would put the
    // smallest ones out of reach, so such a search is refused rather than silently blind to them.
    if (versions.length + allCopies.length > KEY_BUDGET) {
      throw new BadUserInputError(
        `This suspect would be tested against ${versions.length + allCopies.length} keys (${versions.length} versions of its architecture and their ${allCopies.length} licensee copies); one verification tries at most ${KEY_BUDGET}`,
        'artifactId',
        { keys: versions.length + allCopies.length, keyBudget: KEY_BUDGET },
      );
    }
    type Evidence = Omit<WatermarkMatch, 'modelVersion' | 'leakedContract'> & {
      modelVersion: (typeof versions)[number];
    };
    const evidence: (Evidence & MarkEvidence)[] = [];
    let keysTried = 0;
    for (const version of versions) {
      const original = parse(await this.artifacts.read(version.artifact.sha256));
      const copies = allCopies.filter((copy) => copy.markedVersionId === version.id);
      const keys = [this.ownerKey(version.id), ...copies.map((c) => this.licenseeKey(c.contractId))];
      const results = await this.#decode({ kind: 'decode', suspect, original, keys, layout: version.layout });
      if (isRefusal(results)) continue; // a different architecture: nothing to read
      keysTried += keys.length;
      results.forEach((result, i) => {
        evidence.push({
          ...result,
          model: version.model.slug,
          version: version.version,
          modelVersion: version,
          kind: i === 0 ? 'OWNER' : 'LICENSEE',
          contract: i === 0 ? null : copies[i - 1]!.contractId,
          matchedBits: result.matchedBits,
          totalBits: result.totalBits,
          pValue: result.pValue,
        });
      });
    }
    const verdicts = keysTried ? decide(evidence, keysTried) : [];
    const found = verdicts.filter((v) => v.verdict === 'MATCH');
    const leaked = await this.variants.licenseeContracts(found.flatMap((v) => (v.contract ? [v.contract] : [])));
    const matches: WatermarkMatch[] = found.map(
      ({ model, version, modelVersion, kind, contract, matchedBits, totalBits, pValue }) => ({
        model,
        version,
        modelVersion,
        kind,
        contract,
        // Only marks of versions the caller manages are tried; the policy says so again for the contract.
        leakedContract:
          contract && canManage(actor.principal, modelVersion.model) ? (leaked.get(contract) ?? null) : null,
        matchedBits,
        totalBits,
        pValue,
      }),
    );
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
