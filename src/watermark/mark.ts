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
// A `layout` fits the mark to a small model (capacity.ts): only the key's first n bits, and w is several
// tensors joined into one vector, each weight divided by its own tensor's σ (so margins stay in units of σ
// whatever the tensor), the change weighted towards the tensors with most slack.
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

/**
 * Where a mark lives and how many bits it carries. The default, and what versions marked before capacities
 * existed use: MARK_BITS bits on the tensor selectMarkTensor picks. A fitted mark (capacity.ts) carries
 * fewer bits, the key's first `bits`, spread over several tensors.
 */
export interface MarkLayout {
  /** Names of the tensors that carry the mark, in manifest order; their weights form one vector. */
  carriers: string[];
  /** Capacity: the first `bits` carrier rows and target bits of the key. */
  bits: number;
  /**
   * How freely each carrier may change, relative to the others (default: all 1). The change minimises
   * Σ ‖δ_t / σ_t‖² / slack_t, so a tensor whose changes move the outputs little takes more of the mark.
   * Decoding does not need it; marks preserved under a new one do not either.
   */
  slack?: number[];
}

export interface MarkOptions {
  /** DEFAULT_MARGIN, or SHAPED_MARGIN with `shaping`. */
  margin?: number;
  /** The weights the mark is measured against (the unmarked upload); the marked artifact itself by default. */
  reference?: WeightsArtifact;
  /** Marks already present whose projections must not move (the owner's, under a licensee fingerprint). */
  preserve?: readonly MarkKey[];
  /** Shape the change with these statistics of the marked Dense kernel's inputs (shaping.ts). */
  shaping?: InputStatistics;
  /** The default layout unless given; preserved marks must have been made with the same one. */
  layout?: MarkLayout;
}

export interface MarkReport {
  /** Name of the tensor selectMarkTensor picks, which verification looks versions up by. */
  tensor: string;
  /** Weights in it. */
  size: number;
  /** Tensors that carry the mark. */
  carriers: string[];
  /** Capacity of the mark. */
  bits: number;
  margin: number;
  /** ‖change‖ / ‖weights‖ over the carrier tensors. */
  relativeChange: number;
  /** The largest change of one weight, in standard deviations of its tensor. */
  maxChange: number;
  /** Bits of this key that do not decode from the stored weights (as re-quantized, if quantized); 0 in practice. */
  bitErrorsAfter: number;
  /** Calibration examples the change was shaped with; null for the least-norm change. */
  shapedWith: number | null;
}

export function standardDeviation(values: Float32Array): number {
  let sum = 0;
  for (const value of values) sum += value;
  const mean = sum / values.length;
  let squares = 0;
  for (const value of values) squares += (value - mean) ** 2;
  return Math.sqrt(squares / values.length);
}

/**
 * ‖after − before‖ / ‖before‖ over all the parts, and the largest change of one weight in standard deviations
 * of its own tensor.
 */
function changeOf(
  parts: readonly { before: Float32Array; after: Float32Array; sigma: number }[],
): Pick<MarkReport, 'relativeChange' | 'maxChange'> {
  let changeSquares = 0;
  let weightSquares = 0;
  let maxChange = 0;
  for (const { before, after, sigma } of parts) {
    for (let i = 0; i < before.length; i++) {
      const delta = after[i]! - before[i]!;
      changeSquares += delta ** 2;
      weightSquares += before[i]! ** 2;
      maxChange = Math.max(maxChange, Math.abs(delta) / sigma);
    }
  }
  return { relativeChange: Math.sqrt(changeSquares / weightSquares), maxChange };
}

function targetSign(key: MarkKey, bit: number): number {
  return key.bits[bit] ? 1 : -1;
}

/** Of the first `bits` bits of `key`, those whose projection of (weights − reference) has the wrong sign (or is zero). */
export function bitErrors(
  carrier: Carrier,
  key: MarkKey,
  difference: ArrayLike<number>,
  bits: number = MARK_BITS,
): number {
  const projections = project(carrier, difference);
  let errors = 0;
  for (let k = 0; k < bits; k++) if (!(projections[k]! * targetSign(key, k) > 0)) errors++;
  return errors;
}

/**
 * (a − b) / σ over the parts, concatenated: weights in units of their tensor's standard deviation, so a
 * carrier spread over tensors of different scales weighs each weight by its own tensor's spread.
 */
export function scaledDifference(parts: readonly { a: Float32Array; b: Float32Array; sigma: number }[]): Float64Array {
  const out = new Float64Array(parts.reduce((sum, part) => sum + part.a.length, 0));
  let offset = 0;
  for (const { a, b, sigma } of parts) {
    for (let i = 0; i < a.length; i++) out[offset + i] = (a[i]! - b[i]!) / sigma;
    offset += a.length;
  }
  return out;
}

/**
 * δ = M Xᵀ(X M Xᵀ)⁻¹ rhs for the stacked carriers' first `bits` rows (one block per carrier), by Cholesky:
 * the change of least Σ δ_i² / M_i (M: the per-weight slack, identity when absent).
 */
function leastNormChange(
  carriers: readonly Carrier[],
  rhs: Float64Array,
  bits: number,
  metric: Float64Array | undefined,
): Float64Array {
  const rows = rhs.length;
  const gram = new Float64Array(rows * rows);
  carriers.forEach((a, blockRow) => {
    carriers.forEach((b, blockColumn) => {
      if (blockColumn < blockRow) return;
      const block = crossGram(a, b, metric);
      for (let i = 0; i < bits; i++) {
        for (let j = 0; j < bits; j++) {
          const value = block[i * MARK_BITS + j]!;
          gram[(blockRow * bits + i) * rows + blockColumn * bits + j] = value;
          gram[(blockColumn * bits + j) * rows + blockRow * bits + i] = value;
        }
      }
    });
  });
  const coefficients = solveSymmetricPositiveDefinite(gram, rows, rhs);
  const change = new Float64Array(carriers[0]!.size);
  const padded = new Float64Array(MARK_BITS); // rows past the capacity get no weight
  carriers.forEach((carrier, block) => {
    padded.set(coefficients.subarray(block * bits, (block + 1) * bits));
    addTransposed(carrier, padded, change, metric);
  });
  return change;
}

function perWeight(parts: readonly { a: Float32Array }[], values: readonly number[]): Float64Array {
  const out = new Float64Array(parts.reduce((sum, part) => sum + part.a.length, 0));
  let offset = 0;
  parts.forEach((part, i) => {
    out.fill(values[i]!, offset, offset + part.a.length);
    offset += part.a.length;
  });
  return out;
}

/** One carrier tensor's values in the artifact being marked and in the unmarked upload. */
export interface MarkPart {
  weights: Float32Array;
  reference: Float32Array;
}

/**
 * Marks the parts (tensors) as one vector, each weight in units of its tensor's standard deviation σ in
 * the reference. Shaping needs a single Dense kernel of the given shape.
 */
export function embedMark(
  parts: readonly MarkPart[],
  key: MarkKey,
  options: {
    margin?: number;
    bits?: number;
    /** Per part, as MarkLayout.slack. */
    slack?: readonly number[];
    preserve?: readonly MarkKey[];
    shaping?: { statistics: InputStatistics; shape: readonly number[] };
  } = {},
): {
  marked: Float32Array[];
  biasShift: Float64Array | null;
  report: Omit<MarkReport, 'tensor' | 'size' | 'carriers'>;
} {
  const margin = options.margin ?? (options.shaping ? SHAPED_MARGIN : DEFAULT_MARGIN);
  const bits = options.bits ?? MARK_BITS;
  if (!(margin > 0 && Number.isFinite(margin)))
    throw new WatermarkError(`the margin must be a positive number, not ${margin}`);
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= MARK_BITS))
    throw new WatermarkError(`a mark carries 1 to ${MARK_BITS} bits, not ${bits}`);
  if (options.shaping && parts.length !== 1) throw new WatermarkError('only a mark on a single kernel can be shaped');
  const { slack } = options;
  if (slack && !(slack.length === parts.length && slack.every((s) => s > 0 && Number.isFinite(s))))
    throw new WatermarkError('slack needs one positive number per carrier');
  const scaled = parts.map(({ weights, reference }) => {
    if (weights.length !== reference.length) throw new WatermarkError('weights and reference differ in size');
    const sigma = standardDeviation(reference);
    if (!(sigma > 0)) throw new WatermarkError('a marked tensor is constant; it cannot carry a mark');
    return { a: weights, b: reference, sigma };
  });

  const keys = [key, ...(options.preserve ?? [])];
  const size = scaled.reduce((sum, part) => sum + part.a.length, 0);
  const carriers = keys.map((k) => carrierFor(k, size));
  // Right-hand side: the new key's rows move to their targets, the preserved keys' rows stay put.
  const rhs = new Float64Array(keys.length * bits);
  const projections = project(carriers[0]!, scaledDifference(scaled));
  for (let k = 0; k < bits; k++) rhs[k] = margin * targetSign(key, k) - projections[k]!;
  const { change, biasShift } = options.shaping
    ? shapedChange(carriers, rhs, options.shaping.shape, options.shaping.statistics)
    : { change: leastNormChange(carriers, rhs, bits, slack && perWeight(scaled, slack)), biasShift: null };

  let offset = 0;
  const marked = scaled.map(({ a: weights, sigma }) => {
    const values = Float32Array.from(weights, (value, i) => value + sigma * change[offset + i]!);
    offset += weights.length;
    return values;
  });
  const markedDifference = scaledDifference(scaled.map((part, i) => ({ ...part, a: marked[i]! })));
  return {
    marked,
    // The shaped change is in units of σ; so is the bias shift it implies.
    biasShift: biasShift && biasShift.map((value) => value * scaled[0]!.sigma),
    report: {
      bits,
      margin,
      ...changeOf(scaled.map(({ a, sigma }, i) => ({ before: a, after: marked[i]!, sigma }))),
      bitErrorsAfter: bitErrors(carriers[0]!, key, markedDifference, bits),
      shapedWith: options.shaping?.statistics.samples ?? null,
    },
  };
}

/** The layout of marks made without one: full capacity on the tensor selectMarkTensor picks. */
export function defaultLayout(modelJson: unknown): MarkLayout {
  return { carriers: [selectMarkTensor(modelJson).name], bits: MARK_BITS };
}

/**
 * Marks a stored tfjs artifact: the layout's tensors, rewritten in place in a copy of the weight bytes;
 * model.json is unchanged. A quantized tensor (and bias) is dequantized, marked, and stored again in its own
 * scheme (quantization.ts); the mark must then still decode from what was stored, with every bit of `key` and
 * of the preserved keys, else WatermarkError.
 */
export function markArtifact(
  artifact: WeightsArtifact,
  key: MarkKey,
  options: MarkOptions = {},
): WeightsArtifact & { report: MarkReport } {
  const main = selectMarkTensor(artifact.modelJson);
  const layout = options.layout ?? defaultLayout(artifact.modelJson);
  if (layout.carriers.length === 0) throw new WatermarkError('a mark needs at least one carrier tensor');
  const entries = tensorEntries(artifact);
  const reference = options.reference ?? artifact;
  const referenceEntries = tensorEntries(reference);
  const carrierEntries = layout.carriers.map((name) => findTensor(entries, name));
  const parts = carrierEntries.map((entry) => ({
    weights: readTensor(artifact, entry),
    reference: readTensor(reference, findTensor(referenceEntries, entry.spec.name)),
  }));
  let shaping: { statistics: InputStatistics; shape: readonly number[] } | undefined;
  let bias: TensorEntry | undefined;
  if (options.shaping) {
    if (!main.denseLayer || layout.carriers.length !== 1 || layout.carriers[0] !== main.name)
      throw new WatermarkError(
        `only a Dense kernel carrying the whole mark can be shaped, not ${layout.carriers.join(', ')}`,
      );
    bias = entries.find((e) => e.spec.name === `${main.denseLayer}/bias`);
    // Without a bias to take the mean input's shift back, the shift must be minimised too.
    shaping = { statistics: bias ? options.shaping : uncentered(options.shaping), shape: main.shape };
  }
  const { marked, biasShift, report } = embedMark(parts, key, {
    ...options,
    bits: layout.bits,
    slack: layout.slack,
    shaping,
  });
  const dither = (e: TensorEntry) => (e.spec.quantization ? roundingDither(key, e.spec.name, e.size) : undefined);
  let markedWeights = artifact.weights;
  carrierEntries.forEach((entry, i) => {
    markedWeights = withTensor(
      { modelJson: artifact.modelJson, weights: markedWeights },
      entry,
      marked[i]!,
      dither(entry),
    );
  });
  if (bias && biasShift) {
    const shifted = Float32Array.from(readTensor(artifact, bias), (value, j) => value + biasShift[j]!);
    markedWeights = withTensor({ modelJson: artifact.modelJson, weights: markedWeights }, bias, shifted, dither(bias));
  }
  const result = { modelJson: artifact.modelJson, weights: markedWeights };
  const keys = [key, ...(options.preserve ?? [])];
  const stored = carrierEntries.some((entry) => entry.spec.quantization)
    ? storedMark(result, carrierEntries, parts, keys, report.margin, layout.bits)
    : null;
  return {
    ...result,
    report: { tensor: main.name, size: main.size, carriers: layout.carriers, ...report, ...stored },
  };
}

/**
 * What quantized marked tensors changed once stored, measured on the stored values (what a downloader loads).
 * Rounding moves each projection by noise of at most step/2 (quantization.ts); a step too coarse for the margin
 * loses bits, and such a mark is refused rather than published weaker than promised.
 */
function storedMark(
  artifact: WeightsArtifact,
  entries: readonly TensorEntry[],
  parts: readonly { weights: Float32Array; reference: Float32Array }[],
  keys: readonly MarkKey[],
  margin: number,
  bits: number,
): Pick<MarkReport, 'relativeChange' | 'maxChange' | 'bitErrorsAfter'> {
  const scaled = entries.map((entry, i) => ({
    a: readTensor(artifact, entry),
    b: parts[i]!.reference,
    sigma: standardDeviation(parts[i]!.reference),
  }));
  const change = scaledDifference(scaled);
  const lost = keys.map((k) => bitErrors(carrierFor(k, change.length), k, change, bits));
  if (lost.some((errors) => errors > 0)) {
    const coarse = entries
      .map((entry, i) => ({ entry, sigma: scaled[i]!.sigma }))
      .filter(({ entry }) => entry.spec.quantization)
      .map(({ entry, sigma }) => {
        const { dtype, scale } = entry.spec.quantization!;
        return `${entry.spec.name} is ${dtype}-quantized${scale ? ` with a step of ${(scale / sigma).toFixed(3)}σ` : ''}`;
      });
    throw new WatermarkError(
      `weight ${coarse.join(', ')}: too coarse for a mark of margin ${margin}σ (${lost.join(' and ')} of ${bits} bits did not survive re-quantization)`,
    );
  }
  return {
    ...changeOf(scaled.map(({ a, sigma }, i) => ({ before: parts[i]!.weights, after: a, sigma }))),
    bitErrorsAfter: lost[0]!,
  };
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
