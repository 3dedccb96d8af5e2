// The transforms alone, read back by tfjs-core's own decodeWeights: the affine range keeps 0 a level, pruning
// zeroes exactly its share (ties too), and weights that are not float32 pass through untouched.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import {
  affineQuantization,
  optimizeArtifact,
  OptimizationError,
  pruneSmallest,
  type OptimizationOptions,
} from '../../src/lifecycle/optimization.js';
import type { WeightsArtifact } from '../../src/watermark/artifact.js';

/** A deterministic pseudo-random stream in [0, 1). */
function stream(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function artifactOf(
  tensors: { name: string; shape: number[]; values: Float32Array | Int32Array; group?: string }[],
): WeightsArtifact {
  const bytes = tensors.map((t) => new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength));
  const weights = new Uint8Array(bytes.reduce((sum, b) => sum + b.byteLength, 0));
  let offset = 0;
  for (const part of bytes) {
    weights.set(part, offset);
    offset += part.byteLength;
  }
  return {
    modelJson: {
      modelTopology: {},
      weightsManifest: [
        {
          paths: ['model.weights.bin'],
          weights: tensors.map((t) => ({
            name: t.name,
            shape: t.shape,
            dtype: t.values instanceof Int32Array ? 'int32' : 'float32',
            ...(t.group ? { group: t.group } : {}),
          })),
        },
      ],
    },
    weights,
  };
}

/** What tfjs itself reads from the artifact, by weight name. */
function decodedByTfjs(artifact: WeightsArtifact): Record<string, Float32Array | Int32Array> {
  const specs = (artifact.modelJson as tf.io.ModelJSON).weightsManifest.flatMap((group) => group.weights);
  const { weights } = artifact;
  const tensors = tf.io.decodeWeights(
    weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer,
    specs,
  );
  return Object.fromEntries(
    Object.entries(tensors).map(([name, tensor]) => {
      const values = tensor.dataSync() as Float32Array | Int32Array;
      tensor.dispose();
      return [name, values];
    }),
  );
}

const optimize = (artifact: WeightsArtifact, options: Partial<OptimizationOptions>) =>
  optimizeArtifact(artifact, { quantize: null, pruneSparsity: null, ...options });

describe('optimisation transforms, read back by tfjs', () => {
  it('UINT8 keeps 0 an exact level over random ranges, and every value within half a step', () => {
    const random = stream(1);
    for (let trial = 0; trial < 200; trial++) {
      const [low, high] = [-random() * 10 ** (4 * random() - 2), random() * 10 ** (4 * random() - 2)];
      const values = Float32Array.from({ length: 64 }, () => low + (high - low) * random());
      values[trial % 64] = 0;
      const derived = optimize(artifactOf([{ name: 'dense/kernel', shape: [8, 8], values }]), { quantize: 'UINT8' });
      const read = decodedByTfjs(derived)['dense/kernel']!;
      const { scale } = affineQuantization(values, 'uint8');
      assert.equal(read[trial % 64], 0, `trial ${trial}: [${low}, ${high}]`);
      for (let i = 0; i < values.length; i++) {
        assert.ok(Math.abs(read[i]! - values[i]!) <= scale / 2 + 1e-6 * Math.abs(values[i]!), `trial ${trial}, ${i}`);
      }
    }
  });

  it('UINT8 of a tensor without 0 in its range or of one value reads back as tfjs wrote it', () => {
    const positive = Float32Array.from([0.5, 0.75, 1, 1.25]);
    const constant = Float32Array.from([-3, -3, -3]);
    const derived = optimize(
      artifactOf([
        { name: 'a/kernel', shape: [2, 2], values: positive },
        { name: 'a/bias', shape: [3], values: constant },
      ]),
      { quantize: 'UINT8' },
    );
    const read = decodedByTfjs(derived);
    assert.deepEqual(affineQuantization(positive, 'uint8').min, 0.5);
    assert.deepEqual(Array.from(read['a/kernel']!), [0.5, 0.75, 1, 1.25]);
    assert.deepEqual(Array.from(read['a/bias']!), [-3, -3, -3]);
  });

  it('prunes exactly round(s × n) of each kernel, ties by position, biases untouched; int32 weights pass through', () => {
    const kernel = Float32Array.from([3, -1, 1, 1, 2, -0.5]);
    const bias = Float32Array.from([0.001, -0.002]);
    const ids = Int32Array.from([7, -8, 9]);
    const artifact = artifactOf([
      { name: 'dense_1/kernel', shape: [3, 2], values: kernel },
      { name: 'dense_1/bias', shape: [2], values: bias },
      { name: 'lookup', shape: [3], values: ids },
    ]);
    const derived = optimize(artifact, { pruneSparsity: 0.5 });
    const read = decodedByTfjs(derived);
    // 3 of 6: -0.5, then the first two of the three weights of magnitude 1.
    assert.deepEqual(Array.from(read['dense_1/kernel']!), [3, 0, 0, 1, 2, 0]);
    assert.deepEqual(read['dense_1/bias'], bias);
    assert.deepEqual(read.lookup, ids);
    assert.deepEqual(derived.summary, {
      quantizedTensors: 0,
      prunedTensors: 1,
      prunedTensorWeights: 6,
      zeroWeights: 3,
    });
    assert.equal(pruneSmallest(Float32Array.from([0, 0, 5, 6]), 0.25), 2, 'weights already zero count as pruned');

    const quantized = optimize(artifact, { quantize: 'FLOAT16' });
    const specs = (quantized.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights;
    assert.deepEqual(
      specs.map((spec) => [spec.name, spec.dtype, spec.quantization?.dtype]),
      [
        ['dense_1/kernel', 'float32', 'float16'],
        ['dense_1/bias', 'float32', 'float16'],
        ['lookup', 'int32', undefined],
      ],
    );
    assert.deepEqual(decodedByTfjs(quantized).lookup, ids);
  });

  it("pruning a quantised parent keeps its scheme, with 0 exact in the parent's uint8", () => {
    const random = stream(2);
    const values = Float32Array.from({ length: 100 }, () => 0.3 + random());
    const parent = optimize(artifactOf([{ name: 'conv/kernel', shape: [10, 10], values }]), { quantize: 'UINT8' });
    // All weights positive: the parent's range starts above 0, so the pruned tensor needs a new one.
    const pruned = optimize(parent, { pruneSparsity: 0.3 });
    const spec = (pruned.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights[0]!;
    assert.equal(spec.quantization?.dtype, 'uint8');
    assert.equal(spec.quantization.min, 0);
    const read = decodedByTfjs(pruned)['conv/kernel']!;
    assert.equal(read.filter((v) => v === 0).length, 30);
  });

  it("keeps every manifest field, e.g. the optimizer state's group, which serving must tell from layer weights", () => {
    const artifact = artifactOf([
      { name: 'dense/kernel', shape: [2, 2], values: Float32Array.from([1, -2, 3, -4]) },
      { name: 'iter', shape: [], values: Int32Array.from([12]), group: 'optimizer' },
      { name: 'dense/kernel/m', shape: [2, 2], values: Float32Array.from([0.1, 0.2, 0.3, 0.4]), group: 'optimizer' },
    ]);
    for (const options of [{ quantize: 'UINT8' }, { pruneSparsity: 0.5 }] as const) {
      const derived = optimize(artifact, options);
      const specs = (derived.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights;
      assert.deepEqual(
        specs.map((spec) => [spec.name, spec.group]),
        [
          ['dense/kernel', undefined],
          ['iter', 'optimizer'],
          ['dense/kernel/m', 'optimizer'],
        ],
        JSON.stringify(options),
      );
    }
  });

  it('refuses what it cannot store: float16 past its range, non-finite weights, nothing to prune', () => {
    const refuses = (artifact: WeightsArtifact, options: Partial<OptimizationOptions>, message: RegExp) =>
      assert.throws(
        () => optimize(artifact, options),
        (error) => {
          assert.ok(error instanceof OptimizationError);
          assert.match(error.message, message);
          return true;
        },
      );
    const huge = artifactOf([{ name: 'd/kernel', shape: [1, 2], values: Float32Array.from([1, 70000]) }]);
    refuses(huge, { quantize: 'FLOAT16' }, /beyond float16's range/);
    const nan = artifactOf([{ name: 'd/kernel', shape: [1, 2], values: Float32Array.from([1, Number.NaN]) }]);
    refuses(nan, { pruneSparsity: 0.5 }, /holds NaN at index 1/);
    const biasOnly = artifactOf([{ name: 'd/bias', shape: [2], values: Float32Array.from([1, 2]) }]);
    refuses(biasOnly, { pruneSparsity: 0.5 }, /no kernel or embedding weights to prune/);
  });
});
