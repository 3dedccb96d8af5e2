// Optimised variants of a tfjs artifact: magnitude pruning and weight quantisation, written in tfjs's own
// manifest format (`weightsManifest[].weights[].quantization`), so `tf.loadLayersModel` and the inference
// engine load the result as they load any converted model. Pure and synchronous (CPU-bound: the optimizer
// runs it in a worker thread, see optimizer.ts); no tfjs.
//
// - Pruning zeroes, in each kernel (a rank ≥ 2 `kernel`, `depthwise_kernel`, `pointwise_kernel`,
//   `recurrent_kernel` or `embeddings` weight), the fraction s of its weights with the smallest magnitude.
//   Biases and normalisation parameters are left alone: they are few, and each moves a whole unit.
// - UINT8 is tfjs's per-tensor affine scheme (value = level × scale + min, levels 0–255). Its range is
//   nudged as tensorflowjs_converter does, so that 0 is a level: pruned zeros and zero padding stay exactly
//   0 after loading (min = −zeroLevel × scale, and tfjs computes zeroLevel × scale + min in doubles).
// - FLOAT16 is an IEEE half per weight, rounded to nearest even.
// Only float32 weights are rewritten (also ones the parent stored quantised: they are dequantised first);
// int32 and other weights keep their bytes and manifest entry.
import {
  readTensor,
  tensorEntries,
  type TensorEntry,
  type WeightSpec,
  type WeightsArtifact,
} from '../watermark/artifact.js';
import { WatermarkError } from '../watermark/errors.js';
import { quantize, type Quantization, type QuantizationDtype } from '../watermark/quantization.js';

export const QUANTIZE_MODES = ['FLOAT16', 'UINT8'] as const;
export type QuantizeMode = (typeof QUANTIZE_MODES)[number];

export interface OptimizationOptions {
  quantize: QuantizeMode | null;
  /** Fraction of each kernel's weights zeroed, 0 < s < 1; null: no pruning. */
  pruneSparsity: number | null;
}

/** What the transform did, for the report. */
export interface OptimizationSummary {
  /** Float32 tensors stored quantised. */
  quantizedTensors: number;
  /** Kernels pruned, their weights in all, and how many of those are now exactly zero. */
  prunedTensors: number;
  prunedTensorWeights: number;
  zeroWeights: number;
}

export interface OptimizedArtifact extends WeightsArtifact {
  summary: OptimizationSummary;
}

/** An artifact or option the transform refuses; `field` names the input to blame. Plain, so it crosses threads as data. */
export class OptimizationError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

const QUANTIZATION_DTYPE: Record<QuantizeMode, QuantizationDtype> = { FLOAT16: 'float16', UINT8: 'uint8' };
const AFFINE_LEVELS = { uint8: 255, uint16: 65535 } as const;
/** Largest finite float16. */
const FLOAT16_MAX = 65504;
const KERNEL_NAME = /(?:^|\/)(?:kernel|depthwise_kernel|pointwise_kernel|recurrent_kernel|embeddings)(?:_\d+)?$/;

/** A kernel in the sense of pruning: see the module comment. */
export function isPrunable(spec: WeightSpec): boolean {
  return spec.dtype === 'float32' && spec.shape.length >= 2 && KERNEL_NAME.test(spec.name);
}

/**
 * Checks options from a caller: a known quantisation or none, a sparsity strictly between 0 and 1 or none,
 * and at least one of them. Throws OptimizationError naming the field.
 */
export function assertOptimizationOptions(options: { quantize: unknown; pruneSparsity: unknown }): OptimizationOptions {
  const { quantize: mode, pruneSparsity } = options;
  if (mode !== null && !QUANTIZE_MODES.includes(mode as QuantizeMode)) {
    throw new OptimizationError(`quantize must be one of ${QUANTIZE_MODES.join(', ')} or null`, 'quantize');
  }
  if (
    pruneSparsity !== null &&
    (typeof pruneSparsity !== 'number' || !Number.isFinite(pruneSparsity) || pruneSparsity <= 0 || pruneSparsity >= 1)
  ) {
    throw new OptimizationError(
      `pruneSparsity must be a number strictly between 0 and 1 (the share of each kernel's weights zeroed), or null; got ${String(pruneSparsity)}`,
      'pruneSparsity',
    );
  }
  if (mode === null && pruneSparsity === null) {
    throw new OptimizationError('give quantize, pruneSparsity or both: there is nothing to derive', 'quantize');
  }
  return { quantize: mode as QuantizeMode | null, pruneSparsity: pruneSparsity as number | null };
}

/**
 * Zeroes the round(s × n) weights of smallest magnitude (ties broken by position), in place; returns how
 * many weights are zero afterwards.
 */
export function pruneSmallest(values: Float32Array, sparsity: number): number {
  const count = Math.round(sparsity * values.length);
  if (count > 0) {
    const magnitudes = Float32Array.from(values, Math.abs).sort();
    const threshold = magnitudes[count - 1]!;
    let below = 0;
    for (let i = 0; i < values.length; i++) if (Math.abs(values[i]!) < threshold) below++;
    let atThreshold = count - below;
    for (let i = 0; i < values.length; i++) {
      const magnitude = Math.abs(values[i]!);
      if (magnitude < threshold) values[i] = 0;
      else if (magnitude === threshold && atThreshold > 0) {
        values[i] = 0;
        atThreshold--;
      }
    }
  }
  let zeros = 0;
  for (const value of values) if (value === 0) zeros++;
  return zeros;
}

/**
 * tfjs's affine scheme for these values: min and scale over their range, nudged (as tensorflowjs_converter
 * does) so that a range holding 0 has 0 as an exact level.
 */
export function affineQuantization(values: Float32Array, dtype: 'uint8' | 'uint16'): Required<Quantization> {
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const levels = AFFINE_LEVELS[dtype];
  if (!(max > min)) return { dtype, scale: 1, min }; // a constant tensor: every level 0 reads back as min
  const scale = (max - min) / levels;
  if (min > 0 || max < 0) return { dtype, scale, min };
  const zeroLevel = Math.round(-min / scale);
  // Negated product, not a separate division: zeroLevel × scale + min is then exactly 0 in doubles.
  return { dtype, scale, min: -(zeroLevel * scale) };
}

function assertFinite(spec: WeightSpec, values: Float32Array): void {
  const bad = values.findIndex((value) => !Number.isFinite(value));
  if (bad !== -1) {
    throw new OptimizationError(
      `weight ${spec.name} holds ${values[bad]} at index ${bad}: nothing to optimise`,
      'model',
    );
  }
}

/** A manifest entry as the parent's model.json has it, every field kept (e.g. `group: "optimizer"`). */
type ManifestEntry = WeightSpec & Record<string, unknown>;

/** The stored form of one rewritten float32 tensor under `dtype` (none: plain float32). */
function encodeTensor(
  spec: ManifestEntry,
  values: Float32Array,
  dtype: QuantizationDtype | undefined,
): { spec: ManifestEntry; bytes: Uint8Array } {
  const { quantization: _previous, ...plain } = spec;
  if (!dtype) return { spec: plain, bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
  if (dtype === 'float16') {
    const largest = values.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
    if (largest > FLOAT16_MAX) {
      throw new OptimizationError(
        `weight ${spec.name} holds ${largest}, beyond float16's range (±${FLOAT16_MAX}); use UINT8`,
        'quantize',
      );
    }
    return { spec: { ...plain, quantization: { dtype } }, bytes: quantize(spec.name, values, { dtype }) };
  }
  const quantization = affineQuantization(values, dtype);
  return { spec: { ...plain, quantization }, bytes: quantize(spec.name, values, quantization) };
}

function readEntries(parent: WeightsArtifact, maxParameters: number): TensorEntry[] {
  let entries: TensorEntry[];
  try {
    entries = tensorEntries(parent);
  } catch (error) {
    if (error instanceof WatermarkError) throw new OptimizationError(error.message, 'model');
    throw error;
  }
  const parameters = entries.reduce((sum, entry) => sum + entry.size, 0);
  if (parameters > maxParameters) {
    throw new OptimizationError(
      `the model holds ${parameters} weights; at most ${maxParameters} are optimised (the serving budget)`,
      'model',
    );
  }
  return entries;
}

/**
 * The derived artifact: kernels pruned to `pruneSparsity` first, then every float32 tensor quantised.
 * Without `quantize`, pruned tensors keep the parent's storage scheme (affine ones with a range recomputed
 * so that 0 stays exact). The manifest becomes one group in the parent's first weights file (the canonical
 * form stored artifacts have). Throws OptimizationError for a model it cannot help or cannot read.
 */
export function optimizeArtifact(
  parent: WeightsArtifact,
  options: OptimizationOptions,
  maxParameters = Infinity,
): OptimizedArtifact {
  const { quantize: mode, pruneSparsity } = assertOptimizationOptions(options);
  const entries = readEntries(parent, maxParameters);
  const floats = entries.filter((entry) => entry.spec.dtype === 'float32');
  if (mode && floats.length === 0) {
    throw new OptimizationError('the model has no float32 weights to quantise', 'quantize');
  }
  if (pruneSparsity !== null && !floats.some((entry) => isPrunable(entry.spec))) {
    throw new OptimizationError('the model has no kernel or embedding weights to prune', 'pruneSparsity');
  }
  const summary: OptimizationSummary = {
    quantizedTensors: 0,
    prunedTensors: 0,
    prunedTensorWeights: 0,
    zeroWeights: 0,
  };
  const modelJson = parent.modelJson as { weightsManifest: { paths: string[]; weights: ManifestEntry[] }[] };
  // The entries as written (tensorEntries validated them, in the same order), so no field is lost.
  const manifestEntries = modelJson.weightsManifest.flatMap((group) => group.weights);
  const specs: ManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const [index, entry] of entries.entries()) {
    const { spec } = entry;
    const prune = pruneSparsity !== null && isPrunable(spec);
    if (spec.dtype !== 'float32' || (!prune && !mode)) {
      specs.push(manifestEntries[index]!);
      parts.push(parent.weights.subarray(entry.byteOffset, entry.byteOffset + entry.byteLength));
      continue;
    }
    const values = readTensor(parent, entry);
    assertFinite(spec, values);
    if (prune) {
      summary.prunedTensors++;
      summary.prunedTensorWeights += values.length;
      summary.zeroWeights += pruneSmallest(values, pruneSparsity);
    }
    const dtype = mode ? QUANTIZATION_DTYPE[mode] : spec.quantization?.dtype;
    if (mode) summary.quantizedTensors++;
    const encoded = encodeTensor(manifestEntries[index]!, values, dtype);
    specs.push(encoded.spec);
    parts.push(encoded.bytes);
  }
  const weights = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    weights.set(part, offset);
    offset += part.byteLength;
  }
  const weightsFile = modelJson.weightsManifest[0]?.paths[0] ?? 'model.weights.bin';
  return {
    modelJson: { ...modelJson, weightsManifest: [{ paths: [weightsFile], weights: specs }] },
    weights,
    summary,
  };
}
