// What an optimised variant costs and saves, measured, never estimated: parent and derived artifact run
// through the real inference engine on the owner's labelled evaluation examples.
//
// - Sizes: model.json plus weights bytes, and the same gzipped file by file (how a download travels),
//   compressed in zlib's thread pool.
// - Quality: accuracy and macro-F1 against the labels (src/evaluation/metrics.ts), and top-1 agreement of
//   the derived predictions with the parent's (a single-output model: the 0.5 threshold).
// - Speed: the cold load is the first predict (batch 1) on a model key no worker has seen: the artifact is
//   written to the engine's file cache, loaded in a worker and run once. The parent is usually loaded
//   already, so both are timed on a probe copy whose model.json carries one extra (ignored) field, which
//   gives it a key of its own (the copies leave the caches as any unused entry does). p50 latencies at
//   batch 1 and 64 follow on the same copies, parent and derived calls interleaved so that both see the
//   same machine.
// Classification models of one input tensor: the labels are class indices.
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { classificationMetrics, argmaxRows } from '../evaluation/metrics.js';
import type { InferenceEngine, ModelRef, TensorInput } from '../inference/engine.js';
import { artifactHash } from '../models/artifact-service.js';
import { BadUserInputError } from '../server/errors.js';
import type { WeightsArtifact } from '../watermark/artifact.js';

const gzipAsync = promisify(gzip);

/** Largest accuracy loss an optimisation may cost unless the owner allows more: 1 point (a fraction, like accuracy). */
export const DEFAULT_MAX_ACCURACY_DROP = 0.01;
/** Rows per evaluation call: the batch size the latency is also measured at. */
const LARGE_BATCH = 64;

/** Labelled examples, encoded as the model takes them (the watermark's EvaluationData, labels required). */
export interface LabelledEvaluation {
  tensor: TensorInput;
  labels: number[];
}

export interface LatencyRuns {
  /** Timed calls per artifact after the cold load, at batch 1 and at batch 64 (each after 3 untimed ones). */
  batch1: number;
  batch64: number;
}

export const DEFAULT_LATENCY_RUNS: LatencyRuns = { batch1: 50, batch64: 20 };
const WARM_UP_CALLS = 3;

export interface ArtifactMeasurements {
  /** model.json and weights, as stored. */
  bytes: number;
  /** The weights alone. */
  weightBytes: number;
  /** The same two files, each gzipped (default level). */
  gzipBytes: number;
  accuracy: number;
  macroF1: number;
  /** First predict (batch 1) on an uncached key: file cache write, worker load, one run. */
  coldLoadMs: number;
  p50Batch1Ms: number;
  p50Batch64Ms: number;
}

export interface OptimizationReport {
  evaluationSamples: number;
  parent: ArtifactMeasurements;
  derived: ArtifactMeasurements;
  /** Share of examples on which the derived model's top-1 class is the parent's. */
  agreement: number;
  /** parent.bytes / derived.bytes, the same for the weights alone, and gzipped. */
  sizeRatio: number;
  weightsRatio: number;
  gzipRatio: number;
  /** parent.accuracy − derived.accuracy (a fraction; 0.01 is one point). */
  accuracyDrop: number;
  macroF1Drop: number;
}

/**
 * A handle on an artifact held in memory, keyed by its stored bytes' hash (computed here, on the calling
 * thread: the optimizer hands derived artifacts over with theirs).
 */
export function inMemoryRef(artifact: WeightsArtifact): ModelRef {
  const key = artifactHash({
    modelJson: Buffer.from(JSON.stringify(artifact.modelJson)),
    weights: Buffer.from(artifact.weights.buffer, artifact.weights.byteOffset, artifact.weights.byteLength),
  });
  return { key, load: async () => artifact };
}

async function sizes(artifact: WeightsArtifact): Promise<{ bytes: number; weightBytes: number; gzipBytes: number }> {
  const modelJson = Buffer.from(JSON.stringify(artifact.modelJson));
  const [jsonGzip, weightsGzip] = await Promise.all([gzipAsync(modelJson), gzipAsync(artifact.weights)]);
  return {
    bytes: modelJson.byteLength + artifact.weights.byteLength,
    weightBytes: artifact.weights.byteLength,
    gzipBytes: jsonGzip.byteLength + weightsGzip.byteLength,
  };
}

/** Rows [start, start + count) of the evaluation tensor, wrapping around when it has fewer. */
function rows(tensor: TensorInput, start: number, count: number): TensorInput {
  const [total, ...rowShape] = tensor.shape as [number, ...number[]];
  const width = tensor.data.length / total;
  if (start + count <= total) {
    // A view: the engine copies every request's rows into the batch it sends a worker.
    const data = tensor.data.subarray(start * width, (start + count) * width);
    return { data, shape: [count, ...rowShape], dtype: tensor.dtype } as TensorInput;
  }
  const data = tensor.dtype === 'float32' ? new Float32Array(count * width) : new Int32Array(count * width);
  for (let i = 0; i < count; i++) {
    const row = (start + i) % total;
    data.set(tensor.data.subarray(row * width, (row + 1) * width), i * width);
  }
  return { data, shape: [count, ...rowShape], dtype: tensor.dtype } as TensorInput;
}

/**
 * Every example's predicted class, LARGE_BATCH rows per call, and how many classes the model tells apart
 * (a single output is a 0.5 threshold between two).
 */
async function predictedClasses(
  engine: InferenceEngine,
  model: ModelRef,
  tensor: TensorInput,
): Promise<{ predicted: number[]; classes: number }> {
  const total = tensor.shape[0]!;
  const predicted: number[] = [];
  let width = 1;
  for (let start = 0; start < total; start += LARGE_BATCH) {
    const output = await engine.predict(model, rows(tensor, start, Math.min(LARGE_BATCH, total - start)));
    width = output.data.length / output.shape[0]!;
    predicted.push(
      ...(width === 1 ? Array.from(output.data, (v) => (v >= 0.5 ? 1 : 0)) : argmaxRows(output.data, width)),
    );
  }
  return { predicted, classes: Math.max(2, width) };
}

function quality(labels: number[], predicted: number[], classes: number) {
  try {
    return classificationMetrics(labels, predicted, classes);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new BadUserInputError(
        `the evaluation labels do not fit the model's ${classes} classes: ${error.message}`,
        'input.evaluation.labels',
      );
    }
    throw error;
  }
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const startedAt = performance.now();
  await work();
  return performance.now() - startedAt;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * A copy of the artifact under a key of its own (see the module comment), for a cold load. The key is
 * random rather than a hash of the copy: it names these bytes only, and nothing is hashed on this thread.
 */
function coldProbe(artifact: WeightsArtifact): ModelRef {
  const probe = {
    modelJson: { ...(artifact.modelJson as Record<string, unknown>), coldLoadProbe: randomUUID() },
    weights: artifact.weights,
  };
  return { key: randomBytes(32).toString('hex'), load: async () => probe };
}

/** p50 at batch 1 and 64 of each model, their calls interleaved. */
async function latencies(
  engine: InferenceEngine,
  models: ModelRef[],
  tensor: TensorInput,
  runs: LatencyRuns,
): Promise<{ p50Batch1Ms: number; p50Batch64Ms: number }[]> {
  const timings = models.map(() => ({ batch1: [] as number[], batch64: [] as number[] }));
  const large = rows(tensor, 0, LARGE_BATCH);
  for (const [batch, count] of [
    ['batch1', runs.batch1],
    ['batch64', runs.batch64],
  ] as const) {
    for (let run = -WARM_UP_CALLS; run < count; run++) {
      for (const [i, model] of models.entries()) {
        const input = batch === 'batch1' ? rows(tensor, Math.max(run, 0), 1) : large;
        const ms = await timed(() => engine.predict(model, input));
        if (run >= 0) timings[i]![batch].push(ms);
      }
    }
  }
  return timings.map(({ batch1, batch64 }) => ({ p50Batch1Ms: median(batch1), p50Batch64Ms: median(batch64) }));
}

/**
 * Measures parent and derived side by side on `evaluation` (see the module comment). BAD_USER_INPUT when
 * the labels do not fit the model's classes.
 */
export async function measureOptimization(
  engine: InferenceEngine,
  parentRef: ModelRef,
  derivedRef: ModelRef,
  evaluation: LabelledEvaluation,
  runs: LatencyRuns = DEFAULT_LATENCY_RUNS,
): Promise<OptimizationReport> {
  const { tensor, labels } = evaluation;
  if (labels.length === 0) throw new BadUserInputError('evaluation needs at least one example', 'input.evaluation');
  if (labels.length !== tensor.shape[0]) {
    throw new BadUserInputError(
      `evaluation has ${tensor.shape[0]} inputs but ${labels.length} labels`,
      'input.evaluation.labels',
    );
  }
  const [parent, derived] = await Promise.all([parentRef.load(), derivedRef.load()]);
  const probes = [coldProbe(parent), coldProbe(derived)];
  // A worker's first run of any model pays for compiling the backend's kernels; the parent (usually loaded
  // already) takes that, so that the cold loads compare loading the two artifacts.
  await engine.predict(parentRef, rows(tensor, 0, 1));
  const coldLoads: number[] = [];
  for (const probe of probes) coldLoads.push(await timed(() => engine.predict(probe, rows(tensor, 0, 1))));
  const { predicted: parentPredicted, classes } = await predictedClasses(engine, probes[0]!, tensor);
  const { predicted: derivedPredicted } = await predictedClasses(engine, probes[1]!, tensor);
  const [parentQuality, derivedQuality] = [
    quality(labels, parentPredicted, classes),
    quality(labels, derivedPredicted, classes),
  ];
  const [parentSpeed, derivedSpeed] = await latencies(engine, probes, tensor, runs);
  const [parentSizes, derivedSizes] = await Promise.all([sizes(parent), sizes(derived)]);
  const measurements = (
    size: Awaited<ReturnType<typeof sizes>>,
    scores: ReturnType<typeof quality>,
    coldLoadMs: number,
    speed: { p50Batch1Ms: number; p50Batch64Ms: number },
  ): ArtifactMeasurements => ({
    ...size,
    accuracy: scores.accuracy,
    macroF1: scores.macroF1,
    coldLoadMs,
    ...speed,
  });
  const parentMeasured = measurements(parentSizes, parentQuality, coldLoads[0]!, parentSpeed!);
  const derivedMeasured = measurements(derivedSizes, derivedQuality, coldLoads[1]!, derivedSpeed!);
  const agreed = parentPredicted.filter((label, i) => label === derivedPredicted[i]).length;
  return {
    evaluationSamples: labels.length,
    parent: parentMeasured,
    derived: derivedMeasured,
    agreement: agreed / labels.length,
    sizeRatio: parentMeasured.bytes / derivedMeasured.bytes,
    weightsRatio: parentMeasured.weightBytes / derivedMeasured.weightBytes,
    gzipRatio: parentMeasured.gzipBytes / derivedMeasured.gzipBytes,
    accuracyDrop: parentMeasured.accuracy - derivedMeasured.accuracy,
    macroF1Drop: parentMeasured.macroF1 - derivedMeasured.macroF1,
  };
}

/**
 * Refuses (BAD_USER_INPUT on `input.maxAccuracyDrop`, the report in `extensions.measurements`) a variant
 * that loses more than `maxAccuracyDrop` accuracy (a fraction, 0–1; default one point).
 */
export function assertAccuracyBudget(
  report: OptimizationReport,
  maxAccuracyDrop: number = DEFAULT_MAX_ACCURACY_DROP,
): void {
  // The tolerance keeps a drop of exactly the budget (5 of 500 examples for one point) within it despite rounding.
  if (report.accuracyDrop <= maxAccuracyDrop + 1e-9) return;
  const points = (fraction: number) => (100 * fraction).toFixed(2);
  throw new BadUserInputError(
    `The optimised version would lose ${points(report.accuracyDrop)} accuracy points on ${report.evaluationSamples} evaluation examples (${points(report.parent.accuracy)}% → ${points(report.derived.accuracy)}%), more than the ${points(maxAccuracyDrop)} allowed; prune less, quantise less, or raise maxAccuracyDrop`,
    'input.maxAccuracyDrop',
    { measurements: report },
  );
}

/** The owner's budget as given: a fraction between 0 and 1, or the default. */
export function parseMaxAccuracyDrop(value: unknown): number {
  if (value === null || value === undefined) return DEFAULT_MAX_ACCURACY_DROP;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new BadUserInputError(
      `maxAccuracyDrop must be a fraction of accuracy between 0 and 1 (0.01 is one point); got ${String(value)}`,
      'input.maxAccuracyDrop',
    );
  }
  return value;
}
