// The derive and measure steps of publishing an optimised version: check the options, prune and/or quantise
// the version's served artifact off the event loop, measure parent against derived on the owner's labelled
// examples, hold the result to the owner's accuracy budget, and check that the owner mark still verifies.
// Nothing is stored here: the publish pipeline stores the returned bytes and commits the version.
import type { InferenceEngine, ModelRef } from '../inference/engine.js';
import type { StoredArtifact } from '../models/artifact-storage.js';
import { BadUserInputError } from '../server/errors.js';
import type { VariantRow } from '../models/variants.js';
import type { OwnerMarkReading, WatermarkService } from '../watermark/watermark-service.js';
import type { OptimizationOptions, OptimizationSummary } from './optimization.js';
import {
  assertAccuracyBudget,
  DEFAULT_LATENCY_RUNS,
  measureOptimization,
  parseMaxAccuracyDrop,
  type LabelledEvaluation,
  type LatencyRuns,
  type OptimizationReport,
} from './optimization-report.js';
import { parseOptimizationOptions, type ArtifactOptimizer } from './optimizer.js';

export interface OptimizationRequest {
  /** The version derived from: its served artifact (owner-marked, or the upload when unmarked). */
  versionId: string;
  parent: ModelRef;
  /** Its unmarked upload, and its owner mark (the OWNER_MARKED variant; null when unmarked): it must survive. */
  originalSha256: string;
  ownerMark: Pick<VariantRow, 'params'> | null;
  evaluation: LabelledEvaluation;
  /** As the caller gave them: checked here (BAD_USER_INPUT naming the field). */
  quantize?: unknown;
  pruneSparsity?: unknown;
  maxAccuracyDrop?: unknown;
}

/** The owner mark, read from the parent's served artifact and from the derived one. */
export interface OwnerMarkSurvival {
  before: OwnerMarkReading;
  after: OwnerMarkReading;
}

export interface OptimizedVariantReport extends OptimizationReport {
  summary: OptimizationSummary;
  maxAccuracyDrop: number;
  /** Null for an unmarked parent. */
  ownerMark: OwnerMarkSurvival | null;
}

export interface OptimizedVariant {
  /** What was asked (the variant's params). */
  params: OptimizationOptions;
  sha256: string;
  stored: StoredArtifact;
  report: OptimizedVariantReport;
}

/**
 * Refuses (BAD_USER_INPUT, both readings in `extensions.measurements.ownerMark`) a derived artifact on
 * which the owner mark no longer verifies.
 */
export function assertOwnerMarkSurvives(survival: OwnerMarkSurvival): void {
  const { before, after } = survival;
  if (after.holds) return;
  throw new BadUserInputError(
    `The owner watermark does not survive this optimisation: ${after.matchedBits} of ${after.totalBits} bits read back (${before.matchedBits} before; ${after.threshold} needed); prune less or quantise less`,
    undefined, // quantisation and pruning together: no one field is to blame
    { measurements: { ownerMark: survival } },
  );
}

export class OptimizationService {
  constructor(
    private readonly optimizer: ArtifactOptimizer,
    private readonly engine: InferenceEngine,
    private readonly watermarks: Pick<WatermarkService, 'ownerMarkReadings'>,
    private readonly latencyRuns: LatencyRuns = DEFAULT_LATENCY_RUNS,
  ) {}

  /** Derives and measures (see the module comment); throws BAD_USER_INPUT for anything the owner must change. */
  async derive(request: OptimizationRequest): Promise<OptimizedVariant> {
    const params = parseOptimizationOptions(request);
    const maxAccuracyDrop = parseMaxAccuracyDrop(request.maxAccuracyDrop);
    const parent = await request.parent.load();
    const { summary, sha256, ...artifact } = await this.optimizer.optimize(parent, params);
    const derivedRef: ModelRef = { key: sha256, load: async () => artifact };
    const measured = await measureOptimization(
      this.engine,
      request.parent,
      derivedRef,
      request.evaluation,
      this.latencyRuns,
    );
    assertAccuracyBudget(measured, maxAccuracyDrop);
    let ownerMark: OwnerMarkSurvival | null = null;
    if (request.ownerMark) {
      const [before, after] = await this.watermarks.ownerMarkReadings(
        request.versionId,
        request.originalSha256,
        request.ownerMark,
        [parent, artifact],
      );
      ownerMark = { before: before!, after: after! };
      assertOwnerMarkSurvives(ownerMark);
    }
    const stored: StoredArtifact = {
      modelJson: Buffer.from(JSON.stringify(artifact.modelJson)),
      weights: Buffer.from(artifact.weights.buffer, artifact.weights.byteOffset, artifact.weights.byteLength),
    };
    return {
      params,
      sha256,
      stored,
      report: { ...measured, summary, maxAccuracyDrop, ownerMark },
    };
  }
}
