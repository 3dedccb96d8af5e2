// Perturbation methods (Kernel SHAP, occlusion) share the inference queue with every predict call: one call of the
// most instances and coalitions holds at most a small fixed share of it. Real engine and preprocessing workers on
// the demo MNIST MLP; the engine's predict is counted on its way through, not replaced.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EvalSet } from '../../src/evaluation/eval-set.js';
import type { ExplainRequest, Predictor } from '../../src/explanations/explainer.js';
import { featuresOf, type InputLayout } from '../../src/explanations/features.js';
import { KernelShapExplainer } from '../../src/explanations/kernel-shap.js';
import { OcclusionExplainer } from '../../src/explanations/occlusion.js';
import { initBackend } from '../../src/inference/backend.js';
import { InferenceEngine, type ModelRef, type TensorInput } from '../../src/inference/engine.js';
import { PreprocessingPool } from '../../src/preprocessing/preprocessing-pool.js';
import { demoMlp } from '../support/demo-artifacts.js';
import { TEST_BACKEND } from '../support/inference-backend.js';
import { modelRef } from '../inference/models.js';

const PIXELS = 28 * 28;
/** Two chunks of at most 64 perturbed copies. */
const MAX_INSTANCES_IN_FLIGHT = 2 * 64;

const layout: InputLayout = {
  form: 'IMAGE',
  size: PIXELS,
  image: { height: 28, width: 28, channels: 1, scaling: 'unit' },
  featureNames: null,
  baseline: 'black',
  featureUnit: null,
};

describe('perturbation methods: one call’s share of the inference queue', () => {
  let engine: InferenceEngine;
  let workers: PreprocessingPool;
  let artifactDir: string;
  let mlp: ModelRef;
  let digits: EvalSet;
  before(async () => {
    await initBackend(TEST_BACKEND);
    const demo = await demoMlp();
    digits = demo.evalSet;
    mlp = modelRef(demo.artifact);
    artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-perturbations-test-'));
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
    workers = new PreprocessingPool(1, 64);
  });
  after(async () => {
    await engine?.close();
    await workers?.close();
    await rm(artifactDir, { recursive: true, force: true });
  });

  /** The engine's predict, with the most instances it held at once. */
  function countingPredictor(): Predictor & { peak: number } {
    let inFlight = 0;
    const counting = {
      peak: 0,
      async predict(model: ModelRef, input: TensorInput) {
        inFlight += input.shape[0]!;
        counting.peak = Math.max(counting.peak, inFlight);
        try {
          return await engine.predict(model, input);
        } finally {
          inFlight -= input.shape[0]!;
        }
      },
    };
    return counting;
  }

  async function request(samples: number | null): Promise<ExplainRequest> {
    const input: TensorInput = {
      data: (digits.inputs as Float32Array).slice(0, 8 * PIXELS),
      shape: [8, 28, 28, 1],
      dtype: 'float32',
    };
    const outputs = (await engine.predict(mlp, input)).data;
    return {
      model: mlp,
      input,
      layout,
      features: Array.from({ length: 8 }, (_, i) => featuresOf(layout, input, i)),
      outputs,
      classes: 10,
      targets: Array<number>(8).fill(3),
      samples,
    };
  }

  it('Kernel SHAP of 8 images × 2048 coalitions holds at most two chunks of the queue at a time', async () => {
    const predictor = countingPredictor();
    const result = await new KernelShapExplainer(predictor, workers).explain(await request(2048));
    assert.equal(result.instances.length, 8);
    assert.ok(result.evaluations > 8 * 1000, `${result.evaluations} evaluations`);
    for (const instance of result.instances) assert.ok(instance.check!.error < 1e-3, String(instance.check!.error));
    assert.ok(predictor.peak <= MAX_INSTANCES_IN_FLIGHT, `${predictor.peak} instances in flight at once`);
  });

  it('occlusion of 8 images holds at most two chunks of the queue at a time', async () => {
    const predictor = countingPredictor();
    const result = await new OcclusionExplainer(predictor).explain(await request(null));
    assert.equal(result.evaluations, 8 * 49);
    assert.ok(predictor.peak <= MAX_INSTANCES_IN_FLIGHT, `${predictor.peak} instances in flight at once`);
  });
});
