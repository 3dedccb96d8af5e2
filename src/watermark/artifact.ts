// Reading and rewriting weight tensors inside a tfjs artifact: model.json (its weightsManifest) plus the
// weight files concatenated in manifest order, the form the marketplace stores. Tensors are read as
// float32, dequantizing as tfjs does, and written back in their manifest's scheme (quantization.ts).
import { z } from 'zod';
import { WatermarkError } from './errors.js';
import { dequantize, quantize } from './quantization.js';

/** A tfjs artifact as stored: model.json and all weight bytes (structurally the inference engine's ModelArtifact). */
export interface WeightsArtifact {
  modelJson: unknown;
  /** The weight files named in `modelJson.weightsManifest`, concatenated in manifest order. */
  weights: Uint8Array;
}

const weightSpecSchema = z.object({
  name: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  dtype: z.string(),
  quantization: z
    .object({ dtype: z.enum(['uint8', 'uint16', 'float16']), scale: z.number().optional(), min: z.number().optional() })
    .optional(),
});
const modelJsonSchema = z.object({
  modelTopology: z.unknown(),
  weightsManifest: z.array(z.object({ paths: z.array(z.string()), weights: z.array(weightSpecSchema) })),
});

export type WeightSpec = z.infer<typeof weightSpecSchema>;

/** Where one tensor lies in the concatenated weight bytes. */
export interface TensorEntry {
  spec: WeightSpec;
  size: number;
  byteOffset: number;
  byteLength: number;
}

const BYTES_PER_VALUE: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };
const BYTES_PER_QUANTIZED_VALUE = { uint8: 1, uint16: 2, float16: 2 } as const;

export function parseModelJson(modelJson: unknown): z.infer<typeof modelJsonSchema> {
  const parsed = modelJsonSchema.safeParse(modelJson);
  if (!parsed.success)
    throw new WatermarkError(`model.json is not a tfjs model with a weightsManifest: ${parsed.error.message}`);
  return parsed.data;
}

/** Every tensor of the manifest with its byte range; checks that the weights are exactly that long. */
export function tensorEntries(artifact: WeightsArtifact): TensorEntry[] {
  const entries: TensorEntry[] = [];
  let byteOffset = 0;
  for (const spec of parseModelJson(artifact.modelJson).weightsManifest.flatMap((group) => group.weights)) {
    const bytesPerValue = spec.quantization
      ? BYTES_PER_QUANTIZED_VALUE[spec.quantization.dtype]
      : BYTES_PER_VALUE[spec.dtype];
    if (bytesPerValue === undefined)
      throw new WatermarkError(`weight ${spec.name} has unsupported dtype ${spec.dtype}`);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    entries.push({ spec, size, byteOffset, byteLength: size * bytesPerValue });
    byteOffset += size * bytesPerValue;
  }
  if (byteOffset !== artifact.weights.byteLength) {
    throw new WatermarkError(
      `the manifest describes ${byteOffset} weight bytes but the artifact has ${artifact.weights.byteLength}`,
    );
  }
  return entries;
}

export function findTensor(entries: readonly TensorEntry[], name: string): TensorEntry {
  const entry = entries.find((candidate) => candidate.spec.name === name);
  if (!entry) throw new WatermarkError(`the model has no weight named ${name}`);
  return entry;
}

/** The tensor's values as float32, dequantized per its manifest entry. */
export function readTensor(artifact: WeightsArtifact, entry: TensorEntry): Float32Array {
  const { spec, size, byteOffset, byteLength } = entry;
  // Copied into a fresh buffer, so the typed-array views below start at 0 and are aligned. (Not `slice`:
  // on a Node Buffer that returns a view into the same memory.)
  const bytes = new Uint8Array(byteLength);
  bytes.set(artifact.weights.subarray(byteOffset, byteOffset + byteLength));
  const { quantization } = spec;
  if (!quantization) {
    if (spec.dtype !== 'float32') throw new WatermarkError(`weight ${spec.name} is ${spec.dtype}, not float32`);
    return new Float32Array(bytes.buffer, 0, size);
  }
  if (spec.dtype !== 'float32')
    throw new WatermarkError(`weight ${spec.name} is a quantized ${spec.dtype}, not float32`);
  return dequantize(spec.name, bytes, size, quantization);
}

/**
 * A copy of the artifact's weight bytes with one float32 tensor replaced, stored as the manifest says
 * (quantized ones with their min and scale; `dither` as in quantize).
 */
export function withTensor(
  artifact: WeightsArtifact,
  entry: TensorEntry,
  values: Float32Array,
  dither?: Float64Array,
): Uint8Array {
  const { spec } = entry;
  if (spec.dtype !== 'float32') throw new WatermarkError(`weight ${spec.name} is ${spec.dtype}, not float32`);
  if (values.length !== entry.size)
    throw new WatermarkError(`weight ${spec.name} has ${entry.size} values, not ${values.length}`);
  const bytes = spec.quantization
    ? quantize(spec.name, values, spec.quantization, dither)
    : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const weights = new Uint8Array(artifact.weights); // a copy, also when the artifact holds a Node Buffer
  weights.set(bytes, entry.byteOffset);
  return weights;
}
