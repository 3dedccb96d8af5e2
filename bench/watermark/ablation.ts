// Alternatives to the library's decoder, which reads (aligned suspect − original) and leaves out weights
// the suspect zeroed. Here only to measure, at the same weight change, what each choice buys:
// - a blind mark, read from the aligned suspect's own projections and embedded with the formula
//   δ = Xᵀ(XXᵀ)⁻¹(t − Xw), t_k = s_k · max(margin·σ, s_k · x_k·w) (rows past the margin keep their projection);
// - the difference decoder without erasures.
import { alignUnits } from '../../src/watermark/alignment.js';
import { findTensor, readTensor, tensorEntries, withTensor } from '../../src/watermark/artifact.js';
import { addTransposed, carrierFor, crossGram, project } from '../../src/watermark/carrier.js';
import { solveSymmetricPositiveDefinite } from '../../src/watermark/linear-algebra.js';
import { MARK_BITS, selectMarkTensor, type MarkKey, type WeightsArtifact } from '../../src/watermark/index.js';

const sign = (key: MarkKey, k: number) => (key.bits[k] ? 1 : -1);

export function markBlind(
  artifact: WeightsArtifact,
  key: MarkKey,
  margin: number,
): { artifact: WeightsArtifact; relativeChange: number } {
  const entry = findTensor(tensorEntries(artifact), selectMarkTensor(artifact.modelJson).name);
  const weights = readTensor(artifact, entry);
  const sigma = Math.sqrt(weights.reduce((sum, w) => sum + w * w, 0) / weights.length);
  const carrier = carrierFor(key, weights.length);
  const projections = project(carrier, weights);
  const rhs = projections.map((p, k) => sign(key, k) * Math.max(margin * sigma, sign(key, k) * p) - p);
  const change = new Float64Array(weights.length);
  addTransposed(carrier, solveSymmetricPositiveDefinite(crossGram(carrier, carrier), MARK_BITS, rhs), change);
  const marked = Float32Array.from(weights, (w, i) => w + change[i]!);
  const norm = (values: ArrayLike<number>) => Math.sqrt(Array.from(values).reduce((sum, v) => sum + v * v, 0));
  return {
    artifact: { modelJson: artifact.modelJson, weights: withTensor(artifact, entry, marked) },
    relativeChange: norm(change) / norm(weights),
  };
}

/** The blind margin whose mark changes the weights by `relativeChange` (bisection). */
export function blindMarginFor(artifact: WeightsArtifact, key: MarkKey, relativeChange: number): number {
  let [low, high] = [0, 4];
  for (let step = 0; step < 20; step++) {
    const middle = (low + high) / 2;
    if (markBlind(artifact, key, middle).relativeChange < relativeChange) low = middle;
    else high = middle;
  }
  return (low + high) / 2;
}

/**
 * Bit errors of the two alternative decoders: 'blind' reads the signs of the aligned suspect's own
 * projections; 'difference, no erasures' is the library's decoder without leaving out zeroed weights.
 */
export function alternativeBitErrors(
  suspect: WeightsArtifact,
  original: WeightsArtifact,
  key: MarkKey,
  decoder: 'blind' | 'difference, no erasures',
): number {
  const target = selectMarkTensor(original.modelJson);
  const originalValues = readTensor(original, findTensor(tensorEntries(original), target.name));
  const suspectValues = readTensor(suspect, findTensor(tensorEntries(suspect), target.name));
  const aligned = target.unitAxis ? alignUnits(suspectValues, originalValues, target.unitAxis).aligned : suspectValues;
  const decoded = decoder === 'blind' ? aligned : aligned.map((value, i) => value - originalValues[i]!);
  const projections = project(carrierFor(key, target.size), decoded);
  return projections.filter((p, k) => !(p * sign(key, k) > 0)).length;
}
