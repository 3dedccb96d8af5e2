// Embedding a mark: the least-norm change δ of the marked tensor w that puts every carrier projection of
// (w + δ − reference) at ±margin·σ, the sign given by the key's target bit (σ: the reference tensor's
// standard deviation). With X the carrier and t the targets,
//   δ = Xᵀ (X Xᵀ)⁻¹ (t − X (w − reference)),
// solved by Cholesky on the 256 × 256 Gram matrix. No other change of w reaches the targets with a smaller
// ‖δ‖, and ‖δ‖ ≈ margin·σ·sqrt(256), i.e. a relative change of about margin·sqrt(256 / n).
//
// Marks are measured against a reference, the unmarked upload, because decoding is non-blind: it reads
// the projections of (suspect − original), where the original weights cancel exactly instead of acting
// as noise that a blind mark must overpower (see README.md for the measurements behind that choice).
// `preserve` lists marks already in w whose projections must stay where they are: a licensee fingerprint
// solves jointly with the owner key's rows, so it never disturbs the owner mark. `shaping` replaces the
// least-norm change by the one that moves a Dense layer's outputs least on calibration inputs (shaping.ts).
import {
  findTensor,
  readTensor,
  tensorEntries,
  withTensor,
  type TensorEntry,
  type WeightsArtifact,
} from './artifact.js';
import { addTransposed, carrierFor, crossGram, project, type Carrier } from './carrier.js';
import { WatermarkError } from './errors.js';
import { roundingDither } from './quantization.js';
import { MARK_BITS, type MarkKey } from './keys.js';
import { solveSymmetricPositiveDefinite } from './linear-algebra.js';
import { SHAPED_MARGIN, shapedChange, type InputStatistics } from './shaping.js';
import { selectMarkTensor } from './topology.js';

/**
 * Target projection per bit, in standard deviations of the marked tensor. 1σ is the smallest margin that
 * met the robustness targets on the demo models in bench/watermark.ts (see README.md); a larger tensor
 * can afford more, since the relative weight change is about margin · sqrt(256 / weights).
 */
export const DEFAULT_MARGIN = 1;

export interface MarkOptions {
  /** DEFAULT_MARGIN, or SHAPED_MARGIN with `shaping`. */
  margin?: number;
  /** The weights the mark is measured against (the unmarked upload); the marked artifact itself by default. */
  reference?: WeightsArtifact;
  /** Marks already present whose projections must not move (the owner's, under a licensee fingerprint). */
  preserve?: readonly MarkKey[];
  /** Shape the change with these statistics of the marked Dense kernel's inputs (shaping.ts). */
  shaping?: InputStatistics;
}

export interface MarkReport {
  /** Name of the marked weight tensor. */
  tensor: string;
  /** Weights in it. */
  size: number;
  margin: number;
  /** ‖change‖ / ‖weights‖ over the marked tensor. */
  relativeChange: number;
  /** The largest change of one weight, in standard deviations of the tensor. */
  maxChange: number;
  /** Bits of this key that do not decode from the stored weights (as re-quantized, if quantized); 0 in practice. */
  bitErrorsAfter: number;
  /** Calibration examples the change was shaped with; null for the least-norm change. */
  shapedWith: number | null;
}

function standardDeviation(values: Float32Array): number {
  let sum = 0;
  for (const value of values) sum += value;
  const mean = sum / values.length;
  let squares = 0;
  for (const value of values) squares += (value - mean) ** 2;
  return Math.sqrt(squares / values.length);
}

/** ‖after − before‖ / ‖before‖, and the largest change of one weight in units of `sigma`. */
function changeOf(
  before: Float32Array,
  after: Float32Array,
  sigma: number,
): Pick<MarkReport, 'relativeChange' | 'maxChange'> {
  let changeSquares = 0;
  let weightSquares = 0;
  let maxChange = 0;
  for (let i = 0; i < before.length; i++) {
    const delta = after[i]! - before[i]!;
    changeSquares += delta ** 2;
    weightSquares += before[i]! ** 2;
    maxChange = Math.max(maxChange, Math.abs(delta));
  }
  return { relativeChange: Math.sqrt(changeSquares / weightSquares), maxChange: maxChange / sigma };
}

function targetSign(key: MarkKey, bit: number): number {
  return key.bits[bit] ? 1 : -1;
}

/** Bits of `key` whose projection of (weights − reference) has the wrong sign (or is zero). */
export function bitErrors(carrier: Carrier, key: MarkKey, difference: ArrayLike<number>): number {
  const projections = project(carrier, difference);
  let errors = 0;
  for (let k = 0; k < MARK_BITS; k++) if (!(projections[k]! * targetSign(key, k) > 0)) errors++;
  return errors;
}

function difference(a: Float32Array, b: Float32Array): Float64Array {
  return Float64Array.from(a, (value, i) => value - b[i]!);
}

/** δ = Xᵀ(XXᵀ)⁻¹ rhs for the stacked carriers (one block of MARK_BITS rows each), by Cholesky. */
function leastNormChange(carriers: readonly Carrier[], rhs: Float64Array): Float64Array {
  const rows = rhs.length;
  const gram = new Float64Array(rows * rows);
  carriers.forEach((a, blockRow) => {
    carriers.forEach((b, blockColumn) => {
      if (blockColumn < blockRow) return;
      const block = crossGram(a, b);
      for (let i = 0; i < MARK_BITS; i++) {
        for (let j = 0; j < MARK_BITS; j++) {
          const value = block[i * MARK_BITS + j]!;
          gram[(blockRow * MARK_BITS + i) * rows + blockColumn * MARK_BITS + j] = value;
          gram[(blockColumn * MARK_BITS + j) * rows + blockRow * MARK_BITS + i] = value;
        }
      }
    });
  });
  const coefficients = solveSymmetricPositiveDefinite(gram, rows, rhs);
  const change = new Float64Array(carriers[0]!.size);
  carriers.forEach((carrier, block) => {
    addTransposed(carrier, coefficients.subarray(block * MARK_BITS, (block + 1) * MARK_BITS), change);
  });
  return change;
}

/** Marks one tensor. `weights` and `reference` are the tensor's values in the artifact and in the unmarked upload. */
export function embedMark(
  weights: Float32Array,
  reference: Float32Array,
  key: MarkKey,
  options: {
    margin?: number;
    preserve?: readonly MarkKey[];
    shaping?: { statistics: InputStatistics; shape: readonly number[] };
  } = {},
): { marked: Float32Array; biasShift: Float64Array | null; report: Omit<MarkReport, 'tensor' | 'size'> } {
  const margin = options.margin ?? (options.shaping ? SHAPED_MARGIN : DEFAULT_MARGIN);
  if (!(margin > 0 && Number.isFinite(margin)))
    throw new WatermarkError(`the margin must be a positive number, not ${margin}`);
  if (weights.length !== reference.length) throw new WatermarkError('weights and reference differ in size');
  const sigma = standardDeviation(reference);
  if (!(sigma > 0)) throw new WatermarkError('the marked tensor is constant; it cannot carry a mark');

  const keys = [key, ...(options.preserve ?? [])];
  const carriers = keys.map((k) => carrierFor(k, weights.length));
  const current = difference(weights, reference);
  // Right-hand side: the new key's rows move to their targets, the preserved keys' rows stay put.
  const rows = keys.length * MARK_BITS;
  const rhs = new Float64Array(rows);
  const projections = project(carriers[0]!, current);
  for (let k = 0; k < MARK_BITS; k++) rhs[k] = margin * sigma * targetSign(key, k) - projections[k]!;
  const { change, biasShift } = options.shaping
    ? shapedChange(carriers, rhs, options.shaping.shape, options.shaping.statistics)
    : { change: leastNormChange(carriers, rhs), biasShift: null };

  const marked = Float32Array.from(weights, (value, i) => value + change[i]!);
  return {
    marked,
    biasShift,
    report: {
      margin,
      ...changeOf(weights, marked, sigma),
      bitErrorsAfter: bitErrors(carriers[0]!, key, difference(marked, reference)),
      shapedWith: options.shaping?.statistics.samples ?? null,
    },
  };
}

/**
 * Marks a stored tfjs artifact: the tensor selectMarkTensor picks, rewritten in place in a copy of the
 * weight bytes; model.json is unchanged. A quantized tensor (and bias) is dequantized, marked, and stored
 * again in its own scheme (quantization.ts); the mark must then still decode from what was stored, with
 * every bit of `key` and of the preserved keys, else WatermarkError.
 */
export function markArtifact(
  artifact: WeightsArtifact,
  key: MarkKey,
  options: MarkOptions = {},
): WeightsArtifact & { report: MarkReport } {
  const target = selectMarkTensor(artifact.modelJson);
  const entries = tensorEntries(artifact);
  const entry = findTensor(entries, target.name);
  const weights = readTensor(artifact, entry);
  const reference = options.reference ?? artifact;
  const referenceValues = readTensor(reference, findTensor(tensorEntries(reference), target.name));
  let shaping: { statistics: InputStatistics; shape: readonly number[] } | undefined;
  let bias: TensorEntry | undefined;
  if (options.shaping) {
    if (!target.denseLayer) throw new WatermarkError(`only a Dense kernel can be shaped, not ${target.name}`);
    bias = entries.find((e) => e.spec.name === `${target.denseLayer}/bias`);
    // Without a bias to take the mean input's shift back, the shift must be minimised too.
    shaping = { statistics: bias ? options.shaping : uncentered(options.shaping), shape: target.shape };
  }
  const { marked, biasShift, report } = embedMark(weights, referenceValues, key, { ...options, shaping });
  const dither = (e: TensorEntry) => (e.spec.quantization ? roundingDither(key, e.spec.name, e.size) : undefined);
  let markedWeights = withTensor(artifact, entry, marked, dither(entry));
  if (bias && biasShift) {
    const shifted = Float32Array.from(readTensor(artifact, bias), (value, j) => value + biasShift[j]!);
    markedWeights = withTensor({ modelJson: artifact.modelJson, weights: markedWeights }, bias, shifted, dither(bias));
  }
  const result = { modelJson: artifact.modelJson, weights: markedWeights };
  const stored = entry.spec.quantization
    ? storedMark(result, entry, weights, referenceValues, [key, ...(options.preserve ?? [])], report.margin)
    : null;
  return { ...result, report: { tensor: target.name, size: target.size, ...report, ...stored } };
}

/**
 * What a quantized marked tensor changed once stored, measured on the stored values (what a downloader
 * loads). Rounding moves each projection by noise of at most step/2 (quantization.ts); a step too coarse
 * for the margin loses bits, and such a mark is refused rather than published weaker than promised.
 */
function storedMark(
  artifact: WeightsArtifact,
  entry: TensorEntry,
  before: Float32Array,
  reference: Float32Array,
  keys: readonly MarkKey[],
  margin: number,
): Pick<MarkReport, 'relativeChange' | 'maxChange' | 'bitErrorsAfter'> {
  const stored = readTensor(artifact, entry);
  const sigma = standardDeviation(reference);
  const change = difference(stored, reference);
  const lost = keys.map((k) => bitErrors(carrierFor(k, stored.length), k, change));
  const quantization = entry.spec.quantization!;
  if (lost.some((errors) => errors > 0)) {
    const step = quantization.scale ? ` with a step of ${(quantization.scale / sigma).toFixed(3)}σ` : '';
    throw new WatermarkError(
      `weight ${entry.spec.name} is ${quantization.dtype}-quantized${step}: too coarse for a mark of margin ${margin}σ (${lost.join(' and ')} of ${MARK_BITS} bits did not survive re-quantization)`,
    );
  }
  return { ...changeOf(before, stored, sigma), bitErrorsAfter: lost[0]! };
}

/** The statistics as second moments about zero: covariance + mean·meanᵀ, mean 0. */
function uncentered(statistics: InputStatistics): InputStatistics {
  const { inputs, mean } = statistics;
  const covariance = Float64Array.from(
    statistics.covariance,
    (value, k) => value + mean[Math.floor(k / inputs)]! * mean[k % inputs]!,
  );
  return { ...statistics, mean: new Float64Array(inputs), covariance };
}
