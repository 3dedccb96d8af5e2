import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { ModelArtifact, ModelRef } from '../../src/inference/engine.js';

export interface TestModel {
  model: tf.LayersModel;
  artifact: ModelArtifact;
}

/** A dense MLP (e.g. [784, 16, 10]) with seeded random weights and a softmax head. */
export function buildMlp(layerSizes: number[], seed: number): tf.Sequential {
  const [inputSize, ...unitsPerLayer] = layerSizes;
  const model = tf.sequential();
  unitsPerLayer.forEach((units, index) => {
    const isLast = index === unitsPerLayer.length - 1;
    model.add(
      tf.layers.dense({
        units,
        activation: isLast ? 'softmax' : 'relu',
        kernelInitializer: tf.initializers.glorotUniform({ seed: seed + index }),
        biasInitializer: tf.initializers.randomNormal({ seed: seed + 100 + index, stddev: 0.1 }),
        ...(index === 0 ? { inputShape: [inputSize!] } : {}),
      }),
    );
  });
  return model;
}

/**
 * A functional model of two named inputs and two named outputs: `a` [32] and `b` [16] concatenated, a hidden
 * layer (48×64 weights: enough to carry a watermark), then `kind` (3-way softmax) and `score` (one value).
 */
export function buildTwoHeaded(seed: number): tf.LayersModel {
  const init = (offset: number) => tf.initializers.glorotUniform({ seed: seed + offset });
  const a = tf.input({ shape: [32], name: 'a' });
  const b = tf.input({ shape: [16], name: 'b' });
  const joined = tf.layers.concatenate().apply([a, b]) as tf.SymbolicTensor;
  const hidden = tf.layers
    .dense({ units: 64, activation: 'relu', kernelInitializer: init(1) })
    .apply(joined) as tf.SymbolicTensor;
  const kind = tf.layers
    .dense({ units: 3, activation: 'softmax', name: 'kind', kernelInitializer: init(2) })
    .apply(hidden) as tf.SymbolicTensor;
  const score = tf.layers
    .dense({ units: 1, name: 'score', kernelInitializer: init(3) })
    .apply(hidden) as tf.SymbolicTensor;
  return tf.model({ inputs: [a, b], outputs: [kind, score] });
}

/**
 * Serialises a model the way a tfjs save handler sees it, as the database would store it.
 * `shards` > 1 splits the weights into that many manifest paths (the tfjs sharded layout).
 */
export async function toArtifact(model: tf.LayersModel, shards = 1): Promise<ModelArtifact> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!saved?.weightSpecs || !(saved.weightData instanceof ArrayBuffer)) throw new Error('model did not save weights');
  const paths =
    shards === 1
      ? ['model.weights.bin']
      : Array.from({ length: shards }, (_, i) => `group1-shard${i + 1}of${shards}.bin`);
  const modelJson = {
    modelTopology: saved.modelTopology,
    format: 'layers-model',
    generatedBy: saved.generatedBy,
    convertedBy: null,
    weightsManifest: [{ paths, weights: saved.weightSpecs }],
  };
  return { modelJson, weights: new Uint8Array(saved.weightData) };
}

export function artifactKey(artifact: ModelArtifact): string {
  return createHash('sha256').update(JSON.stringify(artifact.modelJson)).update(artifact.weights).digest('hex');
}

/** A ModelRef that counts how often the engine fetched the artifact. */
export function modelRef(artifact: ModelArtifact): ModelRef & { loads: number } {
  const ref = {
    key: artifactKey(artifact),
    loads: 0,
    async load() {
      ref.loads += 1;
      return artifact;
    },
  };
  return ref;
}

/** `count` distinct instances of `size` features: row i is a deterministic pattern of i. */
export function distinctRows(count: number, size: number, offset = 0): Float32Array {
  const data = new Float32Array(count * size);
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < size; col += 1) data[row * size + col] = Math.sin((row + offset + 1) * (col + 1) * 0.37);
  }
  return data;
}
