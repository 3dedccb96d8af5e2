// Small real tfjs models for the watermark tests, saved as the marketplace stores artifacts.
import * as tf from '@tensorflow/tfjs';
import { loadModel, saveArtifact } from '../../bench/watermark/models.js';
import type { UnitSymmetryPart } from '../../bench/watermark/attacks.js';
import type { WeightsArtifact } from '../../src/watermark/index.js';
import { seededRandom } from '../../demo/random.js';

export const SECRET = Buffer.from('test/watermark: a test-only secret');
export const INPUTS = 196;
export const HIDDEN = 64;
export const CLASSES = 10;

/** Dense INPUTS → HIDDEN ReLU → CLASSES softmax, seeded; its first kernel (12,544 weights) carries the mark. */
export function buildMlp(seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [INPUTS],
        units: HIDDEN,
        activation: 'relu',
        kernelInitializer: tf.initializers.glorotNormal({ seed }),
        biasInitializer: tf.initializers.randomNormal({ stddev: 0.1, seed: seed + 1 }),
      }),
      tf.layers.dense({
        units: CLASSES,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }),
      }),
    ],
  });
}

export async function mlpArtifact(seed: number): Promise<WeightsArtifact> {
  const model = buildMlp(seed);
  try {
    return await saveArtifact(model);
  } finally {
    model.dispose();
  }
}

/** The hidden units of buildMlp's first layer: kernel columns, bias, second kernel's rows. */
export function hiddenUnits(artifact: WeightsArtifact): UnitSymmetryPart[] {
  const [kernel, bias, next] = (artifact.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights;
  return [
    { tensor: kernel!.name, axis: { outer: INPUTS, units: HIDDEN, inner: 1 }, power: 1 },
    { tensor: bias!.name, axis: { outer: 1, units: HIDDEN, inner: 1 }, power: 1 },
    { tensor: next!.name, axis: { outer: 1, units: HIDDEN, inner: CLASSES }, power: -1 },
  ];
}

/** Deterministic pseudo-random inputs in [0, 1). */
export function inputs(count: number): tf.Tensor2D {
  const values = Float32Array.from({ length: count * INPUTS }, (_, i) =>
    Math.abs((Math.sin(i * 12.9898) * 43758.5453) % 1),
  );
  return tf.tensor2d(values, [count, INPUTS]);
}

/**
 * A softmax head over 256 features that only ever take values in a 12-dimensional subspace around a mean:
 * what real features largely do (dead units, correlated channels), made exact, so that a mark shaped on
 * such inputs leaves the outputs unchanged whatever the key.
 */
export function subspaceHead() {
  const features = 256;
  const random = seededRandom(8);
  const basis = Array.from({ length: 12 }, () => Array.from({ length: features }, () => random() - 0.5));
  const mean = Array.from({ length: features }, () => random());
  const model = tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [features],
        units: CLASSES,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotNormal({ seed: 3 }),
        biasInitializer: tf.initializers.randomNormal({ stddev: 0.1, seed: 4 }),
      }),
    ],
  });
  const sample = (count: number) =>
    Array.from({ length: count }, () => {
      const weights = basis.map(() => 2 * random() - 1);
      return mean.map((m, i) => m + weights.reduce((sum, w, k) => sum + w * basis[k]![i]!, 0));
    });
  return { model, sample };
}

/** The artifact's model run on `x`: its raw outputs. */
export async function outputsOf(artifact: WeightsArtifact, x: tf.Tensor): Promise<Float32Array> {
  const model = await loadModel(artifact);
  try {
    return (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
  } finally {
    model.dispose();
  }
}
