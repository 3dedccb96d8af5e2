// Optimised variants of the demo MNIST MLP (trained once, cached; its eval.json holds 2,000 held-out digits):
// quantised and pruned in the optimizer's worker, measured through a real inference engine, and loaded by
// tfjs itself.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import { argmaxRows } from '../../src/evaluation/metrics.js';
import { InferenceEngine, type ModelRef, type TensorInput } from '../../src/inference/engine.js';
import type { OptimizedArtifact } from '../../src/lifecycle/optimization.js';
import {
  assertAccuracyBudget,
  inMemoryRef,
  measureOptimization,
  parseMaxAccuracyDrop,
  type OptimizationReport,
} from '../../src/lifecycle/optimization-report.js';
import {
  ArtifactOptimizer,
  MAX_PENDING_OPTIMIZATIONS,
  parseOptimizationOptions,
} from '../../src/lifecycle/optimizer.js';
import type { WeightsArtifact } from '../../src/watermark/artifact.js';
import { demoArtifacts } from '../support/demo-artifacts.js';
import { TEST_BACKEND } from '../support/inference-backend.js';

const RUNS = { batch1: 10, batch64: 5 };

/** The error a call rejects with, to assert on its GraphQL code, field and extensions. */
async function rejection(work: () => unknown): Promise<{ message: string; extensions: Record<string, any> }> {
  try {
    await work();
  } catch (error) {
    return error as { message: string; extensions: Record<string, any> };
  }
  assert.fail('expected a refusal');
}

/** Loads an artifact with tfjs's own loader, from memory. */
async function loadWithTfjs(artifact: WeightsArtifact): Promise<tf.LayersModel> {
  const json = artifact.modelJson as tf.io.ModelJSON;
  const weights = artifact.weights;
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer,
    }),
  );
}

describe('optimised variants of the demo MNIST MLP', () => {
  let engine: InferenceEngine;
  let optimizer: ArtifactOptimizer;
  let parent: WeightsArtifact;
  let parentRef: ModelRef;
  let evalSet: EvalSet;
  let evaluation: { tensor: TensorInput; labels: number[] };
  let artifactDir: string;

  before(async () => {
    const dir = path.join(await demoArtifacts(), 'mnist-mlp');
    parent = {
      modelJson: JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')),
      weights: await readFile(path.join(dir, 'model.weights.bin')),
    };
    parentRef = inMemoryRef(parent);
    evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
    evaluation = {
      tensor: { data: evalSet.inputs, shape: [evalSet.count, ...evalSet.shape], dtype: evalSet.dtype } as TensorInput,
      labels: evalSet.targets,
    };
    artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-optimize-test-'));
    engine = await InferenceEngine.start({
      workers: 1,
      maxBatchSize: 64,
      maxWaitMs: 2,
      maxQueueDepth: 1024,
      cacheBytes: 64 * 1024 * 1024,
      artifactDir,
      batching: true,
      backend: TEST_BACKEND,
    });
    optimizer = new ArtifactOptimizer(1_000_000);
  });
  after(async () => {
    await Promise.all([engine?.close(), optimizer?.close()]);
    await rm(artifactDir, { recursive: true, force: true });
  });

  const derive = (options: { quantize?: unknown; pruneSparsity?: unknown }) => optimizer.optimize(parent, options);
  const measure = (derived: OptimizedArtifact) =>
    measureOptimization(engine, parentRef, inMemoryRef(derived), evaluation, RUNS);

  /** tfjs's own accuracy for the artifact on the held-out digits, computed in this process. */
  async function tfjsAccuracy(artifact: WeightsArtifact): Promise<number> {
    const model = await loadWithTfjs(artifact);
    const scores = tf.tidy(() =>
      (model.predict(tf.tensor(evaluation.tensor.data, evaluation.tensor.shape)) as tf.Tensor).dataSync(),
    );
    model.dispose();
    const predicted = argmaxRows(scores, 10);
    return predicted.filter((label, i) => label === evaluation.labels[i]).length / evaluation.labels.length;
  }

  function assertMeasured(report: OptimizationReport): void {
    assert.equal(report.evaluationSamples, evalSet.count);
    for (const side of [report.parent, report.derived]) {
      for (const [name, value] of Object.entries(side)) {
        assert.ok(Number.isFinite(value) && value > 0, `${name} = ${value}`);
      }
      assert.ok(side.gzipBytes < side.bytes);
      assert.ok(side.coldLoadMs > side.p50Batch1Ms, `cold ${side.coldLoadMs} ms vs warm ${side.p50Batch1Ms} ms`);
    }
    assert.ok(report.parent.accuracy > 0.9, `a real classifier (${report.parent.accuracy})`);
  }

  it('UINT8: tfjs affine uint8 per tensor, ≥ 3.5× smaller, ≤ 1 point lost, loads in tfjs and in the engine', async () => {
    const derived = await derive({ quantize: 'UINT8' });
    const specs = (derived.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights;
    assert.equal(specs.length, 4);
    for (const spec of specs) {
      assert.equal(spec.dtype, 'float32');
      assert.equal(spec.quantization?.dtype, 'uint8');
      assert.ok(spec.quantization.scale! > 0 && Number.isFinite(spec.quantization.min), JSON.stringify(spec));
    }
    assert.equal(derived.weights.byteLength, 784 * 128 + 128 + 128 * 10 + 10);
    assert.deepEqual(derived.summary, {
      quantizedTensors: 4,
      prunedTensors: 0,
      prunedTensorWeights: 0,
      zeroWeights: 0,
    });

    const report = await measure(derived);
    assertMeasured(report);
    assert.ok(report.sizeRatio >= 3.5, `size ratio ${report.sizeRatio}`);
    assert.ok(report.accuracyDrop <= 0.01, `accuracy drop ${report.accuracyDrop}`);
    assert.ok(report.agreement >= 0.98, `agreement ${report.agreement}`);
    // The engine's answers are tfjs's own for the same bytes.
    assert.equal(report.derived.accuracy, await tfjsAccuracy(derived));
    assert.equal(report.parent.accuracy, await tfjsAccuracy(parent));
  });

  it('FLOAT16: half the weight bytes (2× smaller), ≤ 0.1 point lost', async () => {
    const derived = await derive({ quantize: 'FLOAT16' });
    for (const spec of (derived.modelJson as tf.io.ModelJSON).weightsManifest[0]!.weights) {
      assert.deepEqual(spec.quantization, { dtype: 'float16' });
    }
    const report = await measure(derived);
    assertMeasured(report);
    assert.equal(report.weightsRatio, 2);
    // model.json (1.7 KB, uncompressible topology) is the same size in both.
    assert.ok(report.sizeRatio >= 1.98, `size ratio ${report.sizeRatio}`);
    assert.ok(report.accuracyDrop <= 0.001, `accuracy drop ${report.accuracyDrop}`);
    assert.equal(report.derived.accuracy, await tfjsAccuracy(derived));
  });

  it('50% pruning: half of each kernel zeroed, biases untouched, ≤ 1 point lost, smaller gzipped', async () => {
    const derived = await derive({ pruneSparsity: 0.5 });
    const model = await loadWithTfjs(derived);
    const original = await loadWithTfjs(parent);
    for (const [i, weight] of model.weights.entries()) {
      const values = weight.read().dataSync();
      const zeros = values.filter((v) => v === 0).length;
      if (weight.shape.length === 2) assert.equal(zeros, Math.round(values.length / 2), weight.name);
      else assert.deepEqual(values, original.weights[i]!.read().dataSync(), `${weight.name} is left as it was`);
    }
    model.dispose();
    original.dispose();
    assert.deepEqual(derived.summary, {
      quantizedTensors: 0,
      prunedTensors: 2,
      prunedTensorWeights: 784 * 128 + 128 * 10,
      zeroWeights: (784 * 128 + 128 * 10) / 2,
    });
    const report = await measure(derived);
    assertMeasured(report);
    assert.equal(report.sizeRatio, 1);
    assert.ok(report.gzipRatio > 1.3, `gzip ratio ${report.gzipRatio}`);
    assert.ok(report.accuracyDrop <= 0.01, `accuracy drop ${report.accuracyDrop}`);
    assertAccuracyBudget(report);
  });

  it('pruning then UINT8 keeps the pruned weights exactly zero once tfjs has loaded them', async () => {
    const derived = await derive({ quantize: 'UINT8', pruneSparsity: 0.5 });
    const model = await loadWithTfjs(derived);
    const kernels = model.weights.filter((weight) => weight.shape.length === 2);
    for (const kernel of kernels) {
      const values = kernel.read().dataSync();
      assert.equal(values.filter((v) => v === 0).length, values.length / 2, kernel.name);
    }
    model.dispose();
    const report = await measure(derived);
    assert.ok(report.sizeRatio >= 3.5 && report.accuracyDrop <= 0.01, JSON.stringify(report));
  });

  it('refuses 95% pruning past the default 1-point budget, with the measurements', async () => {
    const report = await measure(await derive({ pruneSparsity: 0.95 }));
    assert.ok(report.accuracyDrop > 0.01, `95% pruning should cost more than a point (${report.accuracyDrop})`);
    const refused = await rejection(() => assertAccuracyBudget(report, parseMaxAccuracyDrop(null)));
    assert.equal(refused.extensions.code, 'BAD_USER_INPUT');
    assert.equal(refused.extensions.field, 'input.maxAccuracyDrop');
    assert.match(refused.message, new RegExp(`accuracy points on ${evalSet.count} evaluation examples`));
    assert.deepEqual(refused.extensions.measurements, report);
    // The owner may allow the loss.
    assertAccuracyBudget(report, parseMaxAccuracyDrop(1));
  });

  it('refuses hostile options with BAD_USER_INPUT naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ pruneSparsity: 0 }, 'input.pruneSparsity'],
      [{ pruneSparsity: 1 }, 'input.pruneSparsity'],
      [{ pruneSparsity: Number.NaN }, 'input.pruneSparsity'],
      [{ pruneSparsity: -0.5 }, 'input.pruneSparsity'],
      [{ pruneSparsity: '0.5' }, 'input.pruneSparsity'],
      [{ quantize: 'INT4' }, 'input.quantize'],
      [{ quantize: 'uint8' }, 'input.quantize'],
      [{}, 'input.quantize'],
    ];
    for (const [options, field] of cases) {
      const refused = await rejection(() => derive(options));
      assert.equal(refused.extensions.code, 'BAD_USER_INPUT', JSON.stringify(options));
      assert.equal(refused.extensions.field, field, JSON.stringify(options));
      assert.throws(() => parseOptimizationOptions(options), { extensions: { code: 'BAD_USER_INPUT', field } });
    }
    for (const budget of [-0.1, 1.5, Number.NaN, '0.01']) {
      assert.throws(() => parseMaxAccuracyDrop(budget), {
        extensions: { code: 'BAD_USER_INPUT', field: 'input.maxAccuracyDrop' },
      });
    }
  });

  it('admits a bounded number of optimisations at once; more are SERVICE_UNAVAILABLE, the admitted ones finish', async () => {
    const calls = Array.from({ length: MAX_PENDING_OPTIMIZATIONS + 2 }, () =>
      derive({ quantize: 'FLOAT16' }).then(
        (derived) => ({ ok: derived.weights.byteLength }),
        (error: { extensions: Record<string, any> }) => ({ code: error.extensions.code }),
      ),
    );
    const outcomes = await Promise.all(calls);
    assert.deepEqual(outcomes, [
      ...Array.from({ length: MAX_PENDING_OPTIMIZATIONS }, () => ({ ok: parent.weights.byteLength / 2 })),
      { code: 'SERVICE_UNAVAILABLE' },
      { code: 'SERVICE_UNAVAILABLE' },
    ]);
    // Admitted again once those finished.
    assert.equal((await derive({ quantize: 'FLOAT16' })).weights.byteLength, parent.weights.byteLength / 2);
  });

  it('refuses models it cannot help or must not read: int32 only, non-finite weights, over the parameter budget', async () => {
    const int32Only: WeightsArtifact = {
      modelJson: {
        modelTopology: {},
        weightsManifest: [{ paths: ['model.weights.bin'], weights: [{ name: 'ids', shape: [4], dtype: 'int32' }] }],
      },
      weights: new Uint8Array(new Int32Array([1, 2, 3, 4]).buffer),
    };
    for (const options of [{ quantize: 'UINT8' }, { pruneSparsity: 0.5 }]) {
      const refused = await rejection(() => optimizer.optimize(int32Only, options));
      assert.equal(refused.extensions.code, 'BAD_USER_INPUT');
      assert.match(refused.message, /no float32 weights|no kernel/);
    }

    const poisoned = new Float32Array(parent.weights.byteLength / 4);
    poisoned.set(new Float32Array(new Uint8Array(parent.weights).buffer));
    poisoned[1000] = Number.POSITIVE_INFINITY;
    const refused = await rejection(() =>
      optimizer.optimize(
        { modelJson: parent.modelJson, weights: new Uint8Array(poisoned.buffer) },
        { quantize: 'UINT8' },
      ),
    );
    assert.equal(refused.extensions.code, 'BAD_USER_INPUT');
    assert.match(refused.message, /dense_Dense1\/kernel holds Infinity at index 1000/);

    const truncated = await rejection(() =>
      optimizer.optimize({ modelJson: parent.modelJson, weights: parent.weights.subarray(4) }, { quantize: 'UINT8' }),
    );
    assert.equal(truncated.extensions.code, 'BAD_USER_INPUT');
    assert.match(truncated.message, /describes 407080 weight bytes but the artifact has 407076/);

    const small = new ArtifactOptimizer(100_000);
    try {
      const overBudget = await rejection(() => small.optimize(parent, { quantize: 'FLOAT16' }));
      assert.equal(overBudget.extensions.code, 'BAD_USER_INPUT');
      assert.match(overBudget.message, /holds 101770 weights; at most 100000/);
    } finally {
      await small.close();
    }
  });
});
