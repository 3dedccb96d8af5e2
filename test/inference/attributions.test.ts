// Gradient attributions (InferenceEngine.attributions) in real inference workers, on the demo's trained MNIST MLP
// and its 500 held-out digits (eval.json), a small text model trained here, and a graph model.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import type { EvalSet } from '../../src/evaluation/eval-set.js';
import { attribute, GradientsUnsupportedError } from '../../src/inference/attributions.js';
import { initBackend } from '../../src/inference/backend.js';
import {
  InferenceEngine,
  InferenceInputError,
  InferenceOverloadedError,
  InferenceUnsupportedError,
  type AttributionResult,
  type ModelArtifact,
  type ModelRef,
  type TensorInput,
} from '../../src/inference/engine.js';
import { buildCnn } from '../../demo/models.js';
import { demoMlp } from '../support/demo-artifacts.js';
import { TEST_BACKEND } from '../support/inference-backend.js';
import { modelRef, toArtifact } from './models.js';

const PIXELS = 28 * 28;
/** Integrated gradients' completeness error may be at most this share of |f(x)[t] − f(baseline)[t]|. */
const COMPLETENESS_BOUND = 0.05;

let engine: InferenceEngine;
let artifactDir: string;
let mlp: ModelRef;
let mlpArtifact: ModelArtifact;
let digits: EvalSet;

/** Held-out digits `first` … `first + count − 1` as one input. */
function digitBatch(first: number, count: number): TensorInput {
  const data = (digits.inputs as Float32Array).slice(first * PIXELS, (first + count) * PIXELS);
  return { data, shape: [count, 28, 28, 1], dtype: 'float32' };
}

function argmaxRows(values: Float32Array, columns: number): number[] {
  return Array.from({ length: values.length / columns }, (_, row) => {
    let best = 0;
    for (let c = 1; c < columns; c += 1) if (values[row * columns + c]! > values[row * columns + best]!) best = c;
    return best;
  });
}

async function predictedClasses(input: TensorInput): Promise<number[]> {
  return argmaxRows((await engine.predict(mlp, input)).data, 10);
}

function rowSum(values: Float32Array, row: number, rowSize: number): number {
  let total = 0;
  for (let j = row * rowSize; j < (row + 1) * rowSize; j += 1) total += values[j]!;
  return total;
}

/** x ⊙ ∂ f(x)[target] / ∂ x for the artifact's model, computed in this process on the 'cpu' backend. */
async function cpuGradientTimesInput(
  artifact: ModelArtifact,
  input: TensorInput,
  targets: number[],
): Promise<Float32Array> {
  await tf.setBackend('cpu');
  try {
    const { modelJson, weights } = artifact as { modelJson: tf.io.ModelJSON; weights: Uint8Array };
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
        weightData: weights.slice().buffer,
      }),
    );
    try {
      return tf.tidy(() => {
        const x = tf.tensor(input.data, input.shape);
        const selected = tf.oneHot(tf.tensor1d(targets, 'int32'), model.outputs[0]!.shape[1]!);
        const gradient = tf.grad((at: tf.Tensor) => tf.sum(tf.mul(model.predict(at) as tf.Tensor, selected)))(x);
        return tf.mul(x, gradient).dataSync() as Float32Array;
      });
    } finally {
      model.dispose();
    }
  } finally {
    await tf.setBackend(await initBackend(TEST_BACKEND));
  }
}

/** Equal to 1e-4 of the expected values' largest magnitude. */
function assertCloseToScale(actual: Float32Array, expected: Float32Array): void {
  assert.equal(actual.length, expected.length);
  const scale = expected.reduce((max, v) => Math.max(max, Math.abs(v)), 0);
  assert.ok(scale > 0, 'the reference is not all zeros');
  expected.forEach((value, j) => {
    assert.ok(Math.abs(actual[j]! - value) <= 1e-4 * scale, `value ${j}: ${actual[j]} vs ${value}`);
  });
}

before(async () => {
  await initBackend(TEST_BACKEND);
  ({ artifact: mlpArtifact, evalSet: digits } = await demoMlp());
  assert.deepEqual(digits.shape, [28, 28, 1]);
  mlp = modelRef(mlpArtifact);
  artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-attributions-test-'));
  engine = await InferenceEngine.start({
    workers: 2,
    maxBatchSize: 64,
    maxWaitMs: 2,
    maxQueueDepth: 4096,
    cacheBytes: 64 * 1024 * 1024,
    artifactDir,
    batching: true,
    backend: TEST_BACKEND,
  });
});

after(async () => {
  await engine?.close();
  await rm(artifactDir, { recursive: true, force: true });
});

describe('gradient attributions', () => {
  test('integrated gradients (32 steps) on the MNIST MLP: the image shape, the served outputs, completeness', async (t) => {
    const input = digitBatch(0, 8);
    const targets = await predictedClasses(input);
    const result = await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets });
    assert.deepEqual(result.shape, [8, 28, 28, 1]);
    assert.equal(result.attributions.length, 8 * PIXELS);
    // Outputs are what predict answers; the baseline is the all-zeros image.
    const served = await engine.predict(mlp, input);
    const atBaseline = await engine.predict(mlp, {
      data: new Float32Array(8 * PIXELS),
      shape: [8, 28, 28, 1],
      dtype: 'float32',
    });
    for (let i = 0; i < served.data.length; i += 1) {
      assert.ok(Math.abs(result.outputs[i]! - served.data[i]!) < 1e-5);
      assert.ok(Math.abs(result.baselineOutputs[i]! - atBaseline.data[i]!) < 1e-5);
    }
    const ratios = targets.map((target, i) => {
      const change = result.outputs[i * 10 + target]! - result.baselineOutputs[i * 10 + target]!;
      const error = result.completenessError[i]!;
      // The engine's check is what it says: |Σ attributions − (f(x)[t] − f(b)[t])|.
      assert.ok(Math.abs(error - Math.abs(rowSum(result.attributions, i, PIXELS) - change)) < 1e-4);
      return error / Math.abs(change);
    });
    t.diagnostic(`completeness error / |f(x)[t] − f(b)[t]|: max ${Math.max(...ratios).toFixed(4)}`);
    assert.ok(Math.max(...ratios) < COMPLETENESS_BOUND, `completeness ratios ${ratios.join(', ')}`);
    // Pixels that are 0 in the image (the baseline's value) get exactly 0.
    input.data.forEach((value, j) => {
      if (value === 0) assert.ok(result.attributions[j] === 0, `pixel ${j}: ${result.attributions[j]}`);
    });
  });

  test('more steps bring the completeness error down; one step is a valid (coarse) request', async () => {
    const input = digitBatch(8, 4);
    const targets = await predictedClasses(input);
    const mean = (r: AttributionResult) =>
      r.completenessError.reduce<number>((a, b) => a + b!, 0) / r.completenessError.length;
    const coarse = await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets, steps: 1 });
    const fine = await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets, steps: 128 });
    assert.ok(mean(fine) < mean(coarse), `128 steps ${mean(fine)} vs 1 step ${mean(coarse)}`);
  });

  test('gradient × input equals the input times the gradient computed independently on the cpu backend', async () => {
    const input = digitBatch(20, 3);
    const targets = [1, 7, 3];
    const result = await engine.attributions(mlp, input, { method: 'GRADIENT_X_INPUT', targets });
    assert.deepEqual(result.completenessError, [null, null, null]);
    assertCloseToScale(result.attributions, await cpuGradientTimesInput(mlpArtifact, input, targets));
  });

  test("a convolutional model (the demo CNN's layers): gradient × input as on cpu, integrated gradients complete", async (t) => {
    const cnn = buildCnn([28, 28, 1], 10);
    // Seeded weights, and random biases so units switch on and off along the integration path (with zero biases a
    // ReLU network is linear along it and the integral trivially exact).
    cnn.layers.forEach((layer, i) => {
      layer.setWeights(
        layer.getWeights().map((weights, j) => tf.randomUniform(weights.shape, -0.3, 0.3, 'float32', 10 * i + j)),
      );
    });
    const artifact = await toArtifact(cnn);
    cnn.dispose();
    const ref = modelRef(artifact);
    const input = digitBatch(40, 4);
    const targets = [0, 2, 5, 9];
    const gradientTimesInput = await engine.attributions(ref, input, { method: 'GRADIENT_X_INPUT', targets });
    assertCloseToScale(gradientTimesInput.attributions, await cpuGradientTimesInput(artifact, input, targets));
    // This untrained network's units switch along the path more abruptly than the trained MLP's, and its outputs
    // barely change: 32 steps leave a large relative error, which more steps remove.
    const completeness = async (steps: number) => {
      const integrated = await engine.attributions(ref, input, { method: 'INTEGRATED_GRADIENTS', targets, steps });
      assert.deepEqual(integrated.shape, [4, 28, 28, 1]);
      return targets.map((target, i) => {
        const change = integrated.outputs[i * 10 + target]! - integrated.baselineOutputs[i * 10 + target]!;
        return integrated.completenessError[i]! / Math.abs(change);
      });
    };
    const [coarse, fine] = [await completeness(32), await completeness(256)];
    t.diagnostic(
      `CNN completeness error / |f(x)[t] − f(b)[t]|: max ${Math.max(...coarse).toFixed(4)} (32 steps), ` +
        `${Math.max(...fine).toFixed(4)} (256 steps)`,
    );
    // Measured: 0.69 at 32 steps, 0.06 at 256.
    assert.ok(Math.max(...fine) < 0.1, `completeness ratios ${fine.join(', ')}`);
    assert.ok(Math.max(...fine) < Math.max(...coarse) / 4);
  });

  test('faithfulness on 200 held-out digits: deleting the top-attributed 20% lowers the predicted class faster than deleting a random 20%', async (t) => {
    // Deletion curve: the predicted class's probability as the image loses 0, 4, 8, 12, 16 and 20% of its pixels
    // (set to 0), in order of integrated-gradients attribution (highest first) or in a random order; its area
    // (trapezoids) is the deletion AUC, lower when the attribution found what the prediction rests on.
    const count = 200;
    const fractions = [0, 0.04, 0.08, 0.12, 0.16, 0.2];
    let random = 2026;
    const nextRandom = () => (random = (Math.imul(random, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const auc = (curve: number[]) =>
      curve.slice(1).reduce((sum, p, k) => sum + ((p + curve[k]!) / 2) * (fractions[k + 1]! - fractions[k]!), 0);
    let attributedWins = 0;
    let topDrop = 0;
    let randomDrop = 0;
    for (let first = 0; first < count; first += 8) {
      const input = digitBatch(first, 8);
      const targets = await predictedClasses(input);
      const { attributions } = await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets });
      // Per digit and order, one image per fraction, predicted in one batch.
      const orders = targets.flatMap((_, i) => {
        const pixels = Array.from({ length: PIXELS }, (_, j) => j);
        const byAttribution = [...pixels].sort((a, b) => attributions[i * PIXELS + b]! - attributions[i * PIXELS + a]!);
        const shuffled = pixels
          .map((j) => [nextRandom(), j] as const)
          .sort((a, b) => a[0] - b[0])
          .map(([, j]) => j);
        return [byAttribution, shuffled].map((order) => ({ digit: i, order }));
      });
      const images = new Float32Array(orders.length * fractions.length * PIXELS);
      orders.forEach(({ digit, order }, o) =>
        fractions.forEach((fraction, f) => {
          const image = images.subarray((o * fractions.length + f) * PIXELS, (o * fractions.length + f + 1) * PIXELS);
          image.set(input.data.subarray(digit * PIXELS, (digit + 1) * PIXELS));
          for (const j of order.slice(0, Math.round(fraction * PIXELS))) image[j] = 0;
        }),
      );
      const probabilities = (
        await engine.predict(mlp, {
          data: images,
          shape: [orders.length * fractions.length, 28, 28, 1],
          dtype: 'float32',
        })
      ).data;
      targets.forEach((target, i) => {
        const curve = (o: number) => fractions.map((_, f) => probabilities[(o * fractions.length + f) * 10 + target]!);
        const [attributed, shuffled] = [curve(2 * i), curve(2 * i + 1)];
        if (auc(attributed) < auc(shuffled)) attributedWins += 1;
        topDrop += attributed[0]! - attributed.at(-1)!;
        randomDrop += shuffled[0]! - shuffled.at(-1)!;
      });
    }
    t.diagnostic(
      `deletion AUC better than random on ${attributedWins}/${count} digits; mean probability drop at 20%: ` +
        `attributed ${(topDrop / count).toFixed(3)}, random ${(randomDrop / count).toFixed(3)}`,
    );
    assert.ok(attributedWins >= 0.9 * count, `${attributedWins}/${count}`);
  });

  test('a text model (Embedding → GlobalAveragePooling1D → Dense) gets one weight per token, at the embedding', async (t) => {
    // Class 1 exactly when token 7 occurs; 0 is padding. Trained here (seeded, unshuffled: the same model every run) in a few seconds.
    const length = 6;
    const vocabulary = 12;
    const model = tf.sequential({
      layers: [
        tf.layers.inputLayer({ inputShape: [length], dtype: 'int32' }),
        tf.layers.embedding({
          inputDim: vocabulary,
          outputDim: 8,
          embeddingsInitializer: tf.initializers.randomUniform({ minval: -0.05, maxval: 0.05, seed: 3 }),
        }),
        tf.layers.globalAveragePooling1d(),
        tf.layers.dense({
          units: 2,
          activation: 'softmax',
          kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }),
        }),
      ],
    });
    model.compile({ optimizer: tf.train.adam(0.02), loss: 'sparseCategoricalCrossentropy' });
    let seed = 11;
    const next = (n: number) => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % n;
    const texts = Array.from({ length: 512 }, () =>
      Array.from({ length }, () => (next(4) === 0 ? 0 : 1 + next(vocabulary - 1))),
    );
    const labels = texts.map((ids) => (ids.includes(7) ? 1 : 0));
    const [xs, ys] = [tf.tensor2d(texts, [texts.length, length], 'int32'), tf.tensor1d(labels, 'float32')];
    await model.fit(xs, ys, { epochs: 40, batchSize: 64, shuffle: false, verbose: 0 });
    tf.dispose([xs, ys]);
    const ref = modelRef(await toArtifact(model));
    model.dispose();

    const ids = Int32Array.from([3, 7, 5, 2, 0, 9, 2, 4, 7, 9, 1, 0, 5, 6, 8, 0, 1, 3]);
    const input: TensorInput = { data: ids, shape: [3, length], dtype: 'int32' };
    const served = await engine.predict(ref, input);
    const targets = argmaxRows(served.data, 2);
    assert.deepEqual(targets, [1, 1, 0], 'the model learnt its rule');
    const result = await engine.attributions(ref, input, { method: 'INTEGRATED_GRADIENTS', targets });
    assert.deepEqual(result.shape, [3, length]);
    served.data.forEach((value, i) => assert.ok(Math.abs(result.outputs[i]! - value) < 1e-5));
    const padding = await engine.predict(ref, { data: new Int32Array(length), shape: [1, length], dtype: 'int32' });
    for (let i = 0; i < 3; i += 1) {
      assert.ok(Math.abs(result.baselineOutputs[i * 2]! - padding.data[0]!) < 1e-5, 'the baseline is all padding');
      const change = Math.abs(result.outputs[i * 2 + targets[i]!]! - result.baselineOutputs[i * 2 + targets[i]!]!);
      assert.ok(
        // Plus float32 noise: a saturated prediction can change by less than 1e-6 from the baseline.
        result.completenessError[i]! < COMPLETENESS_BOUND * change + 1e-6,
        `text ${i}: ${result.completenessError[i]} of ${change}`,
      );
      // Padding tokens are the baseline: exactly 0.
      for (let j = 0; j < length; j += 1)
        if (ids[i * length + j] === 0) assert.ok(result.attributions[i * length + j] === 0);
    }
    // For the texts classified by token 7, token 7 carries the most weight.
    const weights = (i: number) => Array.from(result.attributions.subarray(i * length, (i + 1) * length));
    for (const [i, position] of [
      [0, 1],
      [1, 2],
    ] as const) {
      assert.equal(weights(i).indexOf(Math.max(...weights(i))), position, `text ${i}: ${weights(i).join(', ')}`);
    }
    t.diagnostic(
      `text 0 token weights: ${weights(0)
        .map((w) => w.toFixed(3))
        .join(', ')}`,
    );
    const gradientTimesInput = await engine.attributions(ref, input, { method: 'GRADIENT_X_INPUT', targets });
    assert.deepEqual(gradientTimesInput.shape, [3, length]);
  });

  test('a graph model is refused with InferenceUnsupportedError (a BAD_INPUT): tfjs has no gradients for it', async () => {
    const dim = (sizes: number[]) => ({ dim: sizes.map((size) => ({ size: String(size) })) });
    const artifact: ModelArtifact = {
      modelJson: {
        format: 'graph-model',
        generatedBy: 'test',
        convertedBy: 'test',
        modelTopology: {
          versions: { producer: 1 },
          node: [
            { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dim([-1, 4]) } } },
            {
              name: 'w',
              op: 'Const',
              attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim([4, 3]) } } },
            },
            {
              name: 'logits',
              op: 'MatMul',
              input: ['x', 'w'],
              attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } },
            },
            { name: 'probabilities', op: 'Softmax', input: ['logits'], attr: { T: { type: 'DT_FLOAT' } } },
          ],
        },
        weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'w', shape: [4, 3], dtype: 'float32' }] }],
      },
      weights: new Uint8Array(Float32Array.from({ length: 12 }, (_, i) => (i % 5) / 5).buffer),
    };
    const ref = modelRef(artifact);
    const input: TensorInput = { data: Float32Array.from([1, 2, 3, 4]), shape: [1, 4], dtype: 'float32' };
    assert.deepEqual((await engine.predict(ref, input)).shape, [1, 3], 'the graph model serves predictions');
    for (const method of ['INTEGRATED_GRADIENTS', 'GRADIENT_X_INPUT'] as const) {
      await assert.rejects(engine.attributions(ref, input, { method, targets: [0] }), (error: Error) => {
        assert.ok(error instanceof InferenceUnsupportedError, String(error));
        assert.ok(error instanceof InferenceInputError);
        assert.equal(error.code, 'BAD_INPUT');
        assert.match(error.message, /graph model/);
        return true;
      });
    }
  });

  test('bad requests are refused with InferenceInputError, and the engine keeps serving', async () => {
    const input = digitBatch(0, 2);
    const refused = async (request: Parameters<InferenceEngine['attributions']>[2], pattern: RegExp, at = input) =>
      assert.rejects(engine.attributions(mlp, at, request), (error: Error) => {
        assert.ok(error instanceof InferenceInputError && !(error instanceof InferenceUnsupportedError), String(error));
        assert.match(error.message, pattern);
        return true;
      });
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [3, 10] }, /target 10 is not an output column/);
    await refused({ method: 'GRADIENT_X_INPUT', targets: [3, 10] }, /target 10 is not an output column/);
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [3] }, /one target per instance/);
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [3, -1] }, /output column indices/);
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [3, 1.5] }, /output column indices/);
    await refused(
      { method: 'INTEGRATED_GRADIENTS', targets: [3, 4], steps: 0 },
      /steps must be an integer from 1 to 256/,
    );
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [3, 4], steps: 257 }, /steps/);
    await refused({ method: 'SALIENCY' as 'GRADIENT_X_INPUT', targets: [3, 4] }, /unknown attribution method/);
    await refused(
      { method: 'INTEGRATED_GRADIENTS', targets: Array<number>(65).fill(0) },
      /at most 64 instances/,
      digitBatch(0, 65),
    );
    await refused({ method: 'INTEGRATED_GRADIENTS', targets: [0] }, /.+/, {
      data: new Float32Array(10),
      shape: [1, 10],
      dtype: 'float32',
    });
    const result = await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets: [3, 4] });
    assert.equal(result.attributions.length, 2 * PIXELS);
    assert.equal(engine.stats().workerRestarts, 0);
  });

  test('attribution jobs go through the queue admission: past maxQueueDepth gradient points they are OVERLOADED', async () => {
    // Two workers run two jobs; the queue (4096) holds two more waiting 8 × 256 = 2048-point jobs; the fifth
    // cannot be admitted, whatever order they arrive in.
    const request = { method: 'INTEGRATED_GRADIENTS' as const, targets: Array<number>(8).fill(0), steps: 256 };
    const settled = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => engine.attributions(mlp, digitBatch(8 * i, 8), request)),
    );
    const refused = settled.filter((outcome) => outcome.status === 'rejected');
    assert.ok(refused.length >= 1, 'at least one job is refused');
    for (const outcome of refused)
      assert.ok(outcome.reason instanceof InferenceOverloadedError, String(outcome.reason));
    assert.ok(settled.filter((outcome) => outcome.status === 'fulfilled').length >= 2);
    const result = await engine.attributions(mlp, digitBatch(0, 1), { method: 'GRADIENT_X_INPUT', targets: [3] });
    assert.equal(result.attributions.length, PIXELS);
  });

  test('a functional token model is replayed from its Embedding through every branch', () => {
    // ids → Embedding → (average | max over tokens) → concatenate → Dense softmax: layers of two inputs, and a
    // layer order that is not a chain.
    const ids = tf.input({ shape: [5], dtype: 'int32' });
    const init = (seed: number) => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed });
    const embedded = tf.layers
      .embedding({ inputDim: 9, outputDim: 4, embeddingsInitializer: init(1) })
      .apply(ids) as tf.SymbolicTensor;
    const pooled = [tf.layers.globalAveragePooling1d(), tf.layers.globalMaxPooling1d()].map(
      (layer) => layer.apply(embedded) as tf.SymbolicTensor,
    );
    const joined = tf.layers.concatenate().apply(pooled) as tf.SymbolicTensor;
    const output = tf.layers
      .dense({ units: 3, activation: 'softmax', kernelInitializer: init(2), biasInitializer: init(3) })
      .apply(joined) as tf.SymbolicTensor;
    const model = tf.model({ inputs: ids, outputs: output });
    const input = tf.tensor2d(
      [
        [1, 2, 3, 0, 8],
        [4, 4, 5, 6, 7],
      ],
      [2, 5],
      'int32',
    );
    try {
      const expected = tf.tidy(() => (model.predict(input) as tf.Tensor).dataSync());
      const result = attribute(model, input, { method: 'INTEGRATED_GRADIENTS', targets: [0, 2], steps: 256 });
      const [attributions, outputs, baselineOutputs] = [
        result.attributions,
        result.outputs,
        result.baselineOutputs,
      ].map((t) => t.dataSync() as Float32Array);
      assert.deepEqual(result.attributions.shape, [2, 5]);
      expected.forEach((value, i) => assert.ok(Math.abs(outputs![i]! - value) < 1e-6));
      [0, 2].forEach((target, i) => {
        const change = outputs![i * 3 + target]! - baselineOutputs![i * 3 + target]!;
        const total = attributions!.slice(i * 5, (i + 1) * 5).reduce((a, b) => a + b, 0);
        assert.ok(
          Math.abs(total - change) < COMPLETENESS_BOUND * Math.abs(change),
          `instance ${i}: ${total} vs ${change}`,
        );
      });
      tf.dispose([result.attributions, result.outputs, result.baselineOutputs]);
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  test('passes are sized from the input as sent: a model of unknown spatial dims [null, null, null, 3] stays within the pass budget', async (t) => {
    // Symbolically this model holds 3 + 8 + 8 + 4 values per point, which would put all 2 × 256 points of 64×64
    // images (~45 K values each) in one pass; sized from the input, a pass holds about 2^23 values (~186 points).
    const image = tf.input({ shape: [null, null, 3] });
    const conv = tf.layers
      .conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: 'glorotUniform' })
      .apply(image) as tf.SymbolicTensor;
    const pooled = tf.layers.globalAveragePooling2d({}).apply(conv) as tf.SymbolicTensor;
    const output = tf.layers.dense({ units: 4, activation: 'softmax' }).apply(pooled) as tf.SymbolicTensor;
    const model = tf.model({ inputs: image, outputs: output });
    const input = tf.randomUniform([2, 64, 64, 3], 0, 1, 'float32', 7);
    try {
      const profile = await tf.profile(() => {
        const result = attribute(model, input, { method: 'INTEGRATED_GRADIENTS', targets: [0, 1], steps: 256 });
        tf.dispose([result.attributions, result.outputs, result.baselineOutputs]);
        return [];
      });
      const allAtOnceBytes = 2 * 256 * 64 * 64 * (3 + 8) * 4;
      t.diagnostic(
        `peak ${(profile.peakBytes / 2 ** 20).toFixed(0)} MiB; one pass of every point: ${(allAtOnceBytes / 2 ** 20).toFixed(0)} MiB of activations alone`,
      );
      // Backpropagation through the convolution holds several times a pass's activations (im2col buffers,
      // gradients): measured ~210 MiB sized from the input, ~570 MiB when every point ran in one pass.
      assert.ok(profile.peakBytes < 4 * allAtOnceBytes, `peak ${profile.peakBytes} bytes`);
    } finally {
      input.dispose();
      model.dispose();
    }
  });

  test('a computation leaves no tensor behind in the worker, whether it succeeds or is refused', async () => {
    // In this process, as the worker runs it: a model a worker keeps cached must not leak per call.
    const dense = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [5], units: 3, activation: 'softmax', kernelInitializer: 'ones' })],
    });
    const x = tf.tensor2d([[1, 2, 3, 4, 5]]);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5]], [1, 5], 'int32');
    try {
      const before = tf.memory().numTensors;
      for (const method of ['INTEGRATED_GRADIENTS', 'GRADIENT_X_INPUT'] as const) {
        const result = attribute(dense, x, { method, targets: [2], steps: 8 });
        tf.dispose([result.attributions, result.outputs, result.baselineOutputs]);
      }
      assert.throws(() => attribute(dense, x, { method: 'INTEGRATED_GRADIENTS', targets: [3], steps: 8 }), /target 3/);
      assert.throws(
        () => attribute(dense, ids, { method: 'INTEGRATED_GRADIENTS', targets: [0], steps: 8 }),
        /takes float32 input, not int32/,
      );
      assert.equal(tf.memory().numTensors, before);
    } finally {
      tf.dispose([x, ids]);
      dense.dispose();
    }
    // A model whose int32 input feeds no Embedding has nothing to differentiate.
    const cast = tf.sequential({
      layers: [tf.layers.inputLayer({ inputShape: [3], dtype: 'int32' }), tf.layers.dense({ units: 2 })],
    });
    const castIds = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    try {
      assert.throws(
        () => attribute(cast, castIds, { method: 'GRADIENT_X_INPUT', targets: [0], steps: 1 }),
        (error: Error) => error instanceof GradientsUnsupportedError && /Embedding/.test(error.message),
      );
    } finally {
      castIds.dispose();
      cast.dispose();
    }
  });

  test('the event loop stays responsive while integrated gradients run', async (t) => {
    // Two chains (one per worker) of 8-digit × 256-step calls, as many as take several times the bound (sized
    // from one timed call, as the backend's speed varies): work the event loop would wait for if any of it ran
    // there. Two 2,048-point calls at a time fit the queue's 4,096. The bound is generous because this
    // machine's cores are shared: with other processes keeping them busy, the OS alone delays an idle process's
    // timers by up to ~85 ms, and one whose own workers compete for the cores by up to ~170 ms (measured at a
    // load average of 13 on 2 cores).
    const boundMs = 250;
    const input = digitBatch(100, 8);
    const targets = await predictedClasses(input);
    const timed = async (calls: number) => {
      const started = performance.now();
      for (let call = 0; call < calls; call += 1) {
        await engine.attributions(mlp, input, { method: 'INTEGRATED_GRADIENTS', targets, steps: 256 });
      }
      return performance.now() - started;
    };
    const calls = Math.min(16, Math.max(1, Math.ceil((3 * boundMs) / (await timed(1)))));
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    histogram.enable();
    const chainMs = await Promise.all([timed(calls), timed(calls)]);
    histogram.disable();
    const maxDelayMs = histogram.max / 1e6;
    t.diagnostic(
      `2 concurrent chains of ${calls} calls of 8 digits × 256 steps, ${Math.min(...chainMs).toFixed(0)}–${Math.max(...chainMs).toFixed(0)} ms each; ` +
        `event-loop delay max ${maxDelayMs.toFixed(1)} ms, mean ${(histogram.mean / 1e6).toFixed(1)} ms`,
    );
    assert.ok(Math.min(...chainMs) > boundMs, 'the work is long enough that running it on the loop would show');
    assert.ok(maxDelayMs < boundMs, `event loop held for ${maxDelayMs} ms`);
  });
});
