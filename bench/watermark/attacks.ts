// Transformations of a marked artifact that a licensee (or thief) could apply before redistributing it.
// Each works on the stored artifact and returns a new one; the marked tensor is never treated specially.
import type { Random } from '../../demo/random.js';
import { readTensor, tensorEntries, withTensor, type TensorEntry } from '../../src/watermark/artifact.js';
import type { UnitAxis, WeightsArtifact } from '../../src/watermark/index.js';
import { quantize, type Quantization, type QuantizationDtype } from '../../src/watermark/quantization.js';

type TensorMap = (values: Float32Array, entry: TensorEntry) => Float32Array;

/** Applies `transform` to every plain float32 tensor selected by `which`. */
function mapTensors(
  artifact: WeightsArtifact,
  which: (entry: TensorEntry) => boolean,
  transform: TensorMap,
): WeightsArtifact {
  let current = artifact;
  for (const entry of tensorEntries(artifact)) {
    if (entry.spec.dtype !== 'float32' || entry.spec.quantization || !which(entry)) continue;
    current = {
      modelJson: current.modelJson,
      weights: withTensor(current, entry, transform(readTensor(current, entry), entry)),
    };
  }
  return current;
}

const isKernel = (entry: TensorEntry) => entry.spec.shape.length >= 2;

function standardDeviation(values: Float32Array): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}

export function gaussian(random: Random): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/**
 * Every float32 tensor quantized as the tfjs converter's --quantize_uint8 / --quantize_uint16 /
 * --quantize_float16 does it: uint8 and uint16 are per-tensor affine, the min nudged so that 0 is exactly
 * representable; float16 is a cast. The manifest gets the matching `quantization` entries, so tfjs (and
 * the decoder) dequantize on load.
 */
export function quantizeArtifact(artifact: WeightsArtifact, dtype: QuantizationDtype): WeightsArtifact {
  const modelJson = structuredClone(artifact.modelJson) as {
    weightsManifest: { weights: { dtype: string; quantization?: Quantization }[] }[];
  };
  const specs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const chunks: Uint8Array[] = [];
  tensorEntries(artifact).forEach((entry, index) => {
    const bytes = artifact.weights.subarray(entry.byteOffset, entry.byteOffset + entry.byteLength);
    if (entry.spec.dtype !== 'float32' || entry.spec.quantization) return chunks.push(bytes);
    const values = readTensor(artifact, entry);
    let quantization: Quantization = { dtype };
    if (dtype !== 'float16') {
      let min = Infinity;
      let max = -Infinity;
      for (const value of values) [min, max] = [Math.min(min, value), Math.max(max, value)];
      const scale = max > min ? (max - min) / (dtype === 'uint8' ? 255 : 65535) : 1;
      quantization = { dtype, min: max > min ? -Math.round(-min / scale) * scale : min, scale };
    }
    chunks.push(quantize(entry.spec.name, values, quantization));
    specs[index]!.quantization = quantization;
  });
  return { modelJson, weights: Buffer.concat(chunks) };
}

/** Magnitude pruning: the `fraction` smallest |w| of every kernel and embedding set to zero. */
export function pruneArtifact(artifact: WeightsArtifact, fraction: number): WeightsArtifact {
  return mapTensors(artifact, isKernel, (values) => {
    const magnitudes = Float32Array.from(values, Math.abs).sort();
    const cutoff = magnitudes[Math.floor(fraction * values.length)]!;
    return values.map((value) => (Math.abs(value) < cutoff ? 0 : value));
  });
}

/** Gaussian noise of `relative` × std(tensor) added to every float32 tensor. */
export function noiseArtifact(artifact: WeightsArtifact, relative: number, random: Random): WeightsArtifact {
  return mapTensors(
    artifact,
    () => true,
    (values) => {
      const sigma = relative * standardDeviation(values);
      return values.map((value) => value + sigma * gaussian(random));
    },
  );
}

/** Collusion: the weight-wise mean of two copies of the same model (e.g. two licensees' fingerprinted copies). */
export function averageArtifacts(a: WeightsArtifact, b: WeightsArtifact): WeightsArtifact {
  const entries = tensorEntries(b);
  return mapTensors(
    a,
    () => true,
    (values, entry) => {
      const other = readTensor(
        b,
        entries.find((e) => e.spec.name === entry.spec.name)!,
      );
      return values.map((value, i) => (value + other[i]!) / 2);
    },
  );
}

/** One tensor through which a layer's hidden units pass; its units scale by factor^power. */
export interface UnitSymmetryPart {
  tensor: string;
  axis: UnitAxis;
  power: 1 | -1;
}

/**
 * Permutes a layer's hidden units and scales each by a positive factor (log-uniform in [1/maxScale,
 * maxScale]), compensating in the tensors listed, so the model computes the same function.
 */
export function permuteAndScaleUnits(
  artifact: WeightsArtifact,
  parts: readonly UnitSymmetryPart[],
  random: Random,
  maxScale = 2,
): WeightsArtifact {
  const units = parts[0]!.axis.units;
  const permutation = [...Array(units).keys()];
  for (let i = units - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [permutation[i], permutation[j]] = [permutation[j]!, permutation[i]!];
  }
  const scales = Array.from({ length: units }, () => maxScale ** (2 * random() - 1));
  const byName = new Map(parts.map((part) => [part.tensor, part]));
  return mapTensors(
    artifact,
    (entry) => byName.has(entry.spec.name),
    (values, entry) => {
      const { axis, power } = byName.get(entry.spec.name)!;
      const moved = new Float32Array(values.length);
      for (let o = 0; o < axis.outer; o++) {
        for (let u = 0; u < units; u++) {
          const factor = scales[u]! ** power;
          for (let i = 0; i < axis.inner; i++) {
            moved[(o * units + permutation[u]!) * axis.inner + i] = values[(o * units + u) * axis.inner + i]! * factor;
          }
        }
      }
      return moved;
    },
  );
}
