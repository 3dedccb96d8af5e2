import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { Registry } from 'prom-client';
import { initBackend } from '../../src/inference/backend.js';
import { ArtifactStore } from '../../src/inference/artifact-store.js';
import { LoadedModelCache } from '../../src/inference/model-cache.js';
import {
  InferenceArtifactError,
  InferenceClosedError,
  InferenceEngine,
  InferenceInputError,
  InferenceOverloadedError,
  InferenceRuntimeError,
  type InferenceEngineOptions,
  type ModelArtifact,
  type TensorOutput,
} from '../../src/inference/engine.js';
import { TEST_BACKEND } from '../support/inference-backend.js';
import { buildMlp, buildTwoHeaded, distinctRows, modelRef, toArtifact } from './models.js';

const TOLERANCE = 1e-5;
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mm-inference-test-'));
  tempDirs.push(dir);
  return dir;
}

async function startEngine(overrides: Partial<InferenceEngineOptions> = {}): Promise<InferenceEngine> {
  return InferenceEngine.start({
    workers: 2,
    maxBatchSize: 32,
    maxWaitMs: 5,
    maxQueueDepth: 1024,
    cacheBytes: 64 * 1024 * 1024,
    artifactDir: await tempDir(),
    batching: true,
    backend: TEST_BACKEND,
    ...overrides,
  });
}

/** What the same model computes in this process, row by row. */
function expectedOutput(
  model: tf.LayersModel,
  data: Float32Array | Int32Array,
  shape: number[],
  dtype: 'float32' | 'int32' = 'float32',
): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor(data, shape, dtype)) as tf.Tensor).dataSync() as Float32Array);
}

function assertClose(actual: Float32Array, expected: Float32Array): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i += 1) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= TOLERANCE, `value ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

async function metricValue(registry: Registry, name: string, suffix = ''): Promise<number> {
  const metric = await registry.getSingleMetricAsString(name);
  const line = metric.split('\n').find((text) => text.startsWith(`${name}${suffix} `));
  assert.ok(line, `${name}${suffix} is exported`);
  return Number(line.split(' ')[1]);
}

let mlp: tf.LayersModel;
let mlpArtifact: ModelArtifact;

before(async () => {
  // Same backend as the workers, so in-process reference outputs are comparable.
  await initBackend(TEST_BACKEND);
  mlp = buildMlp([784, 16, 10], 1);
  mlpArtifact = await toArtifact(mlp);
});

after(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('InferenceEngine', () => {
  test('serves the same outputs as in-process tfjs and reports its backend', async () => {
    const registry = new Registry();
    const engine = await startEngine({ registry });
    try {
      assert.ok(['tensorflow', 'wasm', 'cpu'].includes(engine.backend));
      // An explicit choice (npm run test:native: tensorflow) is what runs, or the engine does not start.
      if (TEST_BACKEND !== 'auto') assert.equal(engine.backend, TEST_BACKEND);
      assert.equal(engine.backend, await initBackend(TEST_BACKEND));
      assert.equal(await metricValue(registry, 'mm_inference_backend_info', `{backend="${engine.backend}"}`), 1);

      const ref = modelRef(mlpArtifact);
      const input = distinctRows(5, 784);
      const output = await engine.predict(ref, { data: input, shape: [5, 784], dtype: 'float32' });
      assert.deepEqual(output.shape, [5, 10]);
      assertClose(output.data, expectedOutput(mlp, input, [5, 784]));
      assert.equal(await metricValue(registry, 'mm_inference_seconds', '_count'), 1);
      assert.equal(await metricValue(registry, 'mm_inference_queue_depth'), 0);

      // Named as the model's input and output layers are.
      assert.deepEqual(await engine.inspect(ref), {
        inputs: [{ name: mlp.inputNames[0], shape: [null, 784], dtype: 'float32', embeddingInputDim: null }],
        outputs: [{ name: mlp.outputNames[0], shape: [null, 10] }],
      });
    } finally {
      await engine.close();
    }
  });

  test('serves a model of several inputs and outputs, merging concurrent requests and splitting each output back', async () => {
    const model = buildTwoHeaded(5);
    const ref = modelRef(await toArtifact(model));
    const engine = await startEngine({ workers: 1 });
    try {
      const requests = [1, 3, 2].map((n, r) => ({
        n,
        a: distinctRows(n, 32, r * 10),
        b: distinctRows(n, 16, r * 10 + 5),
      }));
      const answers = await Promise.all(
        requests.map(({ n, a, b }) =>
          engine.predictTensors(ref, [
            { data: a, shape: [n, 32], dtype: 'float32' },
            { data: b, shape: [n, 16], dtype: 'float32' },
          ]),
        ),
      );
      answers.forEach((outputs, r) => {
        const { n, a, b } = requests[r]!;
        const expected = tf.tidy(() =>
          (model.predict([tf.tensor(a, [n, 32]), tf.tensor(b, [n, 16])]) as tf.Tensor[]).map(
            (t) => t.dataSync() as Float32Array,
          ),
        );
        assert.deepEqual(
          outputs.map((output) => output.shape),
          [
            [n, 3],
            [n, 1],
          ],
        );
        outputs.forEach((output, j) => assertClose(output.data, expected[j]!));
      });
      const uneven = engine.predictTensors(ref, [
        { data: distinctRows(2, 32), shape: [2, 32], dtype: 'float32' },
        { data: distinctRows(1, 16), shape: [1, 16], dtype: 'float32' },
      ]);
      await assert.rejects(uneven, InferenceInputError);
    } finally {
      await engine.close();
    }
  });

  test('layerInputs answers what a layer receives, as its own task kind, and refuses an unknown layer', async () => {
    const engine = await startEngine({ workers: 1 });
    try {
      const ref = modelRef(mlpArtifact);
      const input = distinctRows(3, 784);
      const head = mlp.layers[1]!;
      const features = await engine.layerInputs(ref, head.name, { data: input, shape: [3, 784], dtype: 'float32' });
      assert.deepEqual(features.shape, [3, 16]);
      const hidden = tf.model({ inputs: mlp.inputs, outputs: head.input as tf.SymbolicTensor });
      assertClose(features.data, expectedOutput(hidden, input, [3, 784]));
      await assert.rejects(
        engine.layerInputs(ref, 'no_such_layer', { data: input, shape: [3, 784], dtype: 'float32' }),
        InferenceInputError,
      );
      // The same model still predicts: the truncated model is not what the worker caches.
      const output = await engine.predict(ref, { data: input, shape: [3, 784], dtype: 'float32' });
      assertClose(output.data, expectedOutput(mlp, input, [3, 784]));
    } finally {
      await engine.close();
    }
  });

  test('serves int32 inputs and sharded weight manifests', async () => {
    const embedding = tf.sequential({
      layers: [
        tf.layers.embedding({
          inputDim: 50,
          outputDim: 4,
          inputLength: 6,
          embeddingsInitializer: tf.initializers.randomNormal({ seed: 3 }),
        }),
        tf.layers.flatten(),
        tf.layers.dense({
          units: 3,
          activation: 'softmax',
          kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }),
        }),
      ],
    });
    const artifact = await toArtifact(embedding, 3);
    const engine = await startEngine({ workers: 1 });
    try {
      const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 7) % 50);
      const output = await engine.predict(modelRef(artifact), { data: ids, shape: [2, 6], dtype: 'int32' });
      assert.deepEqual(output.shape, [2, 3]);
      assertClose(output.data, expectedOutput(embedding, ids, [2, 6], 'int32'));
    } finally {
      await engine.close();
    }
  });

  test('concurrent requests are batched and each gets exactly its own rows', async () => {
    const registry = new Registry();
    const engine = await startEngine({ registry, maxBatchSize: 32 });
    try {
      const ref = modelRef(mlpArtifact);
      await engine.warm(ref);
      // Mixed request sizes: 64 requests of 1, 2 or 3 instances, every row distinct.
      const requests = Array.from({ length: 64 }, (_, i) => {
        const instances = (i % 3) + 1;
        return { instances, data: distinctRows(instances, 784, i * 3) };
      });
      const outputs = await Promise.all(
        requests.map(({ instances, data }) => engine.predict(ref, { data, shape: [instances, 784], dtype: 'float32' })),
      );
      requests.forEach(({ instances, data }, i) => {
        assert.deepEqual(outputs[i]!.shape, [instances, 10]);
        assertClose(outputs[i]!.data, expectedOutput(mlp, data, [instances, 784]));
      });

      const totalInstances = requests.reduce((sum, request) => sum + request.instances, 0);
      const batches = await metricValue(registry, 'mm_predict_batch_size', '_count');
      assert.equal(await metricValue(registry, 'mm_predict_batch_size', '_sum'), totalInstances);
      assert.ok(batches < requests.length / 2, `64 concurrent requests ran in ${batches} batches`);
      assert.ok(batches >= Math.ceil(totalInstances / 32), 'no batch exceeds maxBatchSize');
      assert.equal(ref.loads, 1);
    } finally {
      await engine.close();
    }
  });

  test('a request that arrives while the engine is idle is not held for maxWaitMs', async () => {
    const engine = await startEngine({ maxWaitMs: 200 });
    try {
      const ref = modelRef(mlpArtifact);
      await engine.warm(ref);
      for (let i = 0; i < 3; i += 1) {
        const startedAt = performance.now();
        await engine.predict(ref, { data: distinctRows(1, 784, i), shape: [1, 784], dtype: 'float32' });
        const elapsedMs = performance.now() - startedAt;
        assert.ok(elapsedMs < 100, `lone request took ${elapsedMs.toFixed(1)} ms`);
      }
    } finally {
      await engine.close();
    }
  });

  test('a request larger than maxBatchSize runs alone and intact', async () => {
    const registry = new Registry();
    const engine = await startEngine({ registry, workers: 1, maxBatchSize: 4 });
    try {
      const ref = modelRef(mlpArtifact);
      const large = distinctRows(10, 784);
      const small = distinctRows(1, 784, 50);
      const [largeOutput, smallOutput] = await Promise.all([
        engine.predict(ref, { data: large, shape: [10, 784], dtype: 'float32' }),
        engine.predict(ref, { data: small, shape: [1, 784], dtype: 'float32' }),
      ]);
      assertClose(largeOutput.data, expectedOutput(mlp, large, [10, 784]));
      assertClose(smallOutput.data, expectedOutput(mlp, small, [1, 784]));
      assert.equal(await metricValue(registry, 'mm_predict_batch_size', '_count'), 2);
    } finally {
      await engine.close();
    }
  });

  test('past maxQueueDepth, predict rejects at once with InferenceOverloadedError', async () => {
    const engine = await startEngine({ workers: 1, maxBatchSize: 2, maxQueueDepth: 4 });
    try {
      const ref = modelRef(mlpArtifact);
      await engine.warm(ref);
      const inputs = Array.from({ length: 40 }, (_, i) => distinctRows(1, 784, i));
      const settled = await Promise.allSettled(
        inputs.map((data) => engine.predict(ref, { data, shape: [1, 784], dtype: 'float32' })),
      );
      const rejected = settled.filter((result) => result.status === 'rejected');
      assert.ok(rejected.length > 0, 'some requests were rejected');
      for (const { reason } of rejected) {
        assert.ok(reason instanceof InferenceOverloadedError);
        assert.equal(reason.code, 'OVERLOADED');
      }
      const fulfilled = settled.flatMap((result, i) =>
        result.status === 'fulfilled' ? [{ output: result.value, i }] : [],
      );
      assert.ok(fulfilled.length >= 4, `${fulfilled.length} requests succeeded`);
      for (const { output, i } of fulfilled) assertClose(output.data, expectedOutput(mlp, inputs[i]!, [1, 784]));
      assert.deepEqual(engine.stats(), { queueDepth: 0, inFlight: 0, workers: 1, workerRestarts: 0 });
      // A request too large for the queue can never be admitted: that is an input error, not overload.
      await assert.rejects(
        engine.predict(ref, { data: distinctRows(5, 784), shape: [5, 784], dtype: 'float32' }),
        InferenceInputError,
      );
    } finally {
      await engine.close();
    }
  });

  test('rejects malformed inputs and model keys', async () => {
    const engine = await startEngine({ workers: 1 });
    try {
      const ref = modelRef(mlpArtifact);
      const cases = [
        { data: new Float32Array(783), shape: [1, 784], dtype: 'float32' as const },
        { data: new Float32Array(784), shape: [0.5, 1568], dtype: 'float32' as const },
        { data: new Int32Array(784), shape: [1, 784], dtype: 'float32' as const },
        { data: new Float32Array(0), shape: [0, 784], dtype: 'float32' as const },
      ];
      for (const input of cases) await assert.rejects(engine.predict(ref, input), InferenceInputError);
      await assert.rejects(
        engine.predict({ ...ref, key: '../etc' }, { data: new Float32Array(784), shape: [1, 784], dtype: 'float32' }),
        InferenceInputError,
      );
      // A shape the model does not accept fails inside tfjs, and only for that request.
      await assert.rejects(
        engine.predict(ref, { data: new Float32Array(10), shape: [1, 10], dtype: 'float32' }),
        /shape/,
      );
      const output = await engine.predict(ref, { data: new Float32Array(784), shape: [1, 784], dtype: 'float32' });
      assert.deepEqual(output.shape, [1, 10]);
    } finally {
      await engine.close();
    }
  });

  test('artifacts are fetched once, written content-addressed, and validated', async () => {
    const artifactDir = await tempDir();
    const sharded = await toArtifact(mlp, 2);
    const ref = modelRef(sharded);
    const engine = await startEngine({ artifactDir });
    try {
      const inputs = Array.from({ length: 8 }, (_, i) => distinctRows(1, 784, i));
      await Promise.all(inputs.map((data) => engine.predict(ref, { data, shape: [1, 784], dtype: 'float32' })));
      assert.equal(ref.loads, 1, 'concurrent first calls load the artifact once');
      assert.deepEqual(await readdir(artifactDir), [ref.key]);
      assert.deepEqual((await readdir(path.join(artifactDir, ref.key))).sort(), [
        'group1-shard1of2.bin',
        'group1-shard2of2.bin',
        'model.json',
      ]);

      const truncated = { ...mlpArtifact, weights: mlpArtifact.weights.subarray(4) };
      await assert.rejects(engine.warm(modelRef(truncated)), InferenceArtifactError);
      const escaping = structuredClone(mlpArtifact);
      (escaping.modelJson as { weightsManifest: { paths: string[] }[] }).weightsManifest[0]!.paths = ['../escape.bin'];
      await assert.rejects(engine.warm(modelRef(escaping)), InferenceArtifactError);
      assert.deepEqual(await readdir(artifactDir), [ref.key], 'rejected artifacts leave nothing behind');
    } finally {
      await engine.close();
    }

    // A new engine on the same directory serves from disk without fetching again.
    const restarted = await startEngine({ artifactDir });
    try {
      const reloadedRef = modelRef(sharded);
      const data = distinctRows(2, 784);
      const output = await restarted.predict(reloadedRef, { data, shape: [2, 784], dtype: 'float32' });
      assertClose(output.data, expectedOutput(mlp, data, [2, 784]));
      assert.equal(reloadedRef.loads, 0);
    } finally {
      await restarted.close();
    }
  });

  test('worker model cache evicts least recently used models beyond cacheBytes', async () => {
    const models = [buildMlp([784, 16, 10], 11), buildMlp([784, 16, 10], 12)];
    const refs = await Promise.all(models.map(async (model) => modelRef(await toArtifact(model))));
    const weightBytes = (await toArtifact(models[0]!)).weights.byteLength;
    const registry = new Registry();
    // One worker whose budget holds one of the two models.
    const engine = await startEngine({ registry, workers: 1, cacheBytes: Math.floor(weightBytes * 1.5) });
    try {
      const data = distinctRows(1, 784);
      for (const index of [0, 1, 0, 0]) {
        const output = await engine.predict(refs[index]!, { data, shape: [1, 784], dtype: 'float32' });
        assertClose(output.data, expectedOutput(models[index]!, data, [1, 784]));
      }
      assert.equal(await metricValue(registry, 'mm_model_cache_misses_total'), 3);
      assert.equal(await metricValue(registry, 'mm_model_cache_evictions_total'), 2);
      assert.equal(await metricValue(registry, 'mm_model_cache_hits_total'), 1);
    } finally {
      await engine.close();
    }
  });

  test('a disk cache that holds one model still serves three at once, each from its own weights', async () => {
    const models = [31, 32, 33].map((seed) => buildMlp([784, 16, 10], seed));
    const refs = await Promise.all(models.map(async (model) => modelRef(await toArtifact(model))));
    // Models cached in no worker (cacheBytes 0) are read from disk on every task, so an entry evicted
    // while a task still needed it would fail that task.
    const engine = await startEngine({ cacheBytes: 0, artifactCacheBytes: 1 });
    try {
      const data = distinctRows(4, 784);
      const calls = Array.from({ length: 30 }, (_, i) => i % 3);
      const outputs = await Promise.all(
        calls.map((index) => engine.predict(refs[index]!, { data, shape: [4, 784], dtype: 'float32' })),
      );
      outputs.forEach((output, i) => assertClose(output.data, expectedOutput(models[calls[i]!]!, data, [4, 784])));
      // One at a time, each model's entry evicts the others': they are rebuilt from the source.
      for (const index of [0, 1, 2, 0]) {
        const output = await engine.predict(refs[index]!, { data, shape: [4, 784], dtype: 'float32' });
        assertClose(output.data, expectedOutput(models[index]!, data, [4, 784]));
      }
      assert.ok(refs.reduce((sum, ref) => sum + ref.loads, 0) > 3, 'entries were evicted and rebuilt from the source');
    } finally {
      await engine.close();
    }
  });

  test('the main event loop stays responsive while inference runs', async () => {
    const wide = buildMlp([784, 128, 10], 5);
    const ref = modelRef(await toArtifact(wide));
    const engine = await startEngine();
    try {
      await engine.warm(ref);
      let longestGapMs = 0;
      let lastTick = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        longestGapMs = Math.max(longestGapMs, now - lastTick);
        lastTick = now;
      }, 5);
      try {
        for (let round = 0; round < 5; round += 1) {
          await Promise.all(
            Array.from({ length: 64 }, (_, i) =>
              engine.predict(ref, { data: distinctRows(4, 784, i), shape: [4, 784], dtype: 'float32' }),
            ),
          );
        }
      } finally {
        clearInterval(ticker);
      }
      assert.ok(longestGapMs < 200, `event loop stalled for ${longestGapMs.toFixed(1)} ms`);
    } finally {
      await engine.close();
    }
  });

  test('engines on separate registries coexist; one without a registry exports nothing', async () => {
    const registries = [new Registry(), new Registry()];
    const engines = await Promise.all([
      startEngine({ workers: 1, registry: registries[0] }),
      startEngine({ workers: 1, registry: registries[1] }),
      startEngine({ workers: 1 }),
    ]);
    try {
      const ref = modelRef(mlpArtifact);
      const data = distinctRows(1, 784);
      await Promise.all(engines.map((engine) => engine.predict(ref, { data, shape: [1, 784], dtype: 'float32' })));
      for (const registry of registries)
        assert.equal(await metricValue(registry, 'mm_predict_batch_size', '_count'), 1);
    } finally {
      await Promise.all(engines.map((engine) => engine.close()));
    }
    assert.equal(await registries[0]!.metrics(), '\n', 'close() unregisters the metrics');
  });

  test('close() finishes admitted work, then rejects new requests', async () => {
    const engine = await startEngine({ workers: 1, maxBatchSize: 4, maxWaitMs: 50 });
    const ref = modelRef(mlpArtifact);
    const inputs = Array.from({ length: 12 }, (_, i) => distinctRows(1, 784, i));
    const pending = inputs.map((data) => engine.predict(ref, { data, shape: [1, 784], dtype: 'float32' }));
    await engine.close();
    const outputs: TensorOutput[] = await Promise.all(pending);
    outputs.forEach((output, i) => assertClose(output.data, expectedOutput(mlp, inputs[i]!, [1, 784])));
    await assert.rejects(
      engine.predict(ref, { data: inputs[0]!, shape: [1, 784], dtype: 'float32' }),
      InferenceClosedError,
    );
  });

  test('a merged batch with one out-of-vocabulary id fails only that request (issue 9 row 5)', async () => {
    const text = tf.sequential({
      layers: [
        tf.layers.embedding({
          inputDim: 1000,
          outputDim: 4,
          inputLength: 6,
          embeddingsInitializer: tf.initializers.randomNormal({ seed: 21 }),
        }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 22 }) }),
      ],
    });
    const ref = modelRef(await toArtifact(text));
    // One worker: the twelve requests arrive together and are merged into one batch.
    const engine = await startEngine({ workers: 1 });
    try {
      await engine.warm(ref);
      const inputs = Array.from({ length: 12 }, (_, i) =>
        Int32Array.from({ length: 6 }, (_, j) => (i * 37 + j * 11) % 1000),
      );
      inputs[5]![2] = 99999;
      const settled = await Promise.allSettled(
        inputs.map((data) => engine.predict(ref, { data, shape: [1, 6], dtype: 'int32' })),
      );
      settled.forEach((result, i) => {
        if (i === 5) {
          assert.equal(result.status, 'rejected');
          const { reason } = result as PromiseRejectedResult;
          assert.ok(reason instanceof InferenceInputError, String(reason));
          assert.match(reason.message, /99999/);
        } else {
          assert.equal(result.status, 'fulfilled', `request ${i}: ${String((result as PromiseRejectedResult).reason)}`);
          assertClose(
            (result as PromiseFulfilledResult<TensorOutput>).value.data,
            expectedOutput(text, inputs[i]!, [1, 6], 'int32'),
          );
        }
      });
    } finally {
      await engine.close();
    }
  });

  test('a worker whose tfjs runtime breaks is replaced and counted, its model quarantined; other work goes on', async (t) => {
    if ((await initBackend(TEST_BACKEND)) !== 'wasm') return t.skip('what breaks here is the wasm runtime');
    // No weights, but an activation of 2^28 + 1 rows of 4 floats: 2^32 + 16 bytes, which wraps the wasm
    // allocator's 32-bit size, and the kernel then writes out of bounds (the runtime is broken from then on).
    const bomb = tf.sequential({
      layers: [tf.layers.repeatVector({ n: 2 ** 28 + 1, inputShape: [4] }), tf.layers.globalAveragePooling1d({})],
    });
    const bombRef = modelRef(await toArtifact(bomb));
    const ref = modelRef(mlpArtifact);
    const registry = new Registry();
    const engine = await startEngine({ workers: 1, registry });
    try {
      await engine.warm(ref);
      await assert.rejects(
        engine.predict(bombRef, { data: new Float32Array(4), shape: [1, 4], dtype: 'float32' }),
        InferenceRuntimeError,
      );
      for (let waited = 0; engine.stats().workerRestarts === 0 && waited < 5000; waited += 10) await sleep(10);
      assert.equal(engine.stats().workerRestarts, 1);
      assert.equal(engine.stats().workers, 1);
      assert.equal(await metricValue(registry, 'mm_inference_worker_restarts_total'), 1);
      // Quarantined: calling it again fails at once and breaks no other worker.
      await assert.rejects(
        engine.predict(bombRef, { data: new Float32Array(4), shape: [1, 4], dtype: 'float32' }),
        /broke an inference worker; it is not run again for \d+ s/,
      );
      await sleep(200);
      assert.equal(engine.stats().workerRestarts, 1);
      const data = distinctRows(3, 784);
      const output = await engine.predict(ref, { data, shape: [3, 784], dtype: 'float32' });
      assertClose(output.data, expectedOutput(mlp, data, [3, 784]));
    } finally {
      await engine.close();
    }
  });

  test('a model over maxParameters is refused from its manifest before its files are written', async () => {
    const artifactDir = await tempDir();
    const engine = await startEngine({ maxParameters: 1000, artifactDir });
    try {
      await assert.rejects(engine.warm(modelRef(mlpArtifact)), (error: Error) => {
        assert.ok(error instanceof InferenceArtifactError);
        assert.match(error.message, /holds 12730 parameters; at most 1000/);
        return true;
      });
      assert.deepEqual(await readdir(artifactDir), []);
    } finally {
      await engine.close();
    }
  });

  test('a model saved with its optimizer state passes the pre-load check and serves', async () => {
    const model = buildMlp([8, 4, 3], 41);
    model.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy' });
    await model.fit(tf.ones([2, 8]), tf.oneHot(tf.tensor1d([0, 1], 'int32'), 3), { epochs: 1, verbose: 0 });
    let saved!: tf.io.ModelArtifacts;
    await model.save(
      tf.io.withSaveHandler(
        async (a) => ((saved = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }),
      ),
      { includeOptimizer: true },
    );
    assert.ok(
      saved.weightSpecs!.some((spec) => spec.group === 'optimizer'),
      'the manifest holds optimizer weights',
    );
    const ref = modelRef({
      modelJson: {
        modelTopology: saved.modelTopology,
        trainingConfig: saved.trainingConfig,
        format: 'layers-model',
        weightsManifest: [{ paths: ['model.weights.bin'], weights: saved.weightSpecs }],
      },
      weights: new Uint8Array(saved.weightData as ArrayBuffer),
    });
    const engine = await startEngine({ workers: 1 });
    try {
      const data = distinctRows(2, 8);
      const output = await engine.predict(ref, { data, shape: [2, 8], dtype: 'float32' });
      assertClose(output.data, expectedOutput(model, data, [2, 8]));
    } finally {
      await engine.close();
    }
  });

  test('a load that fails after tfjs built the model frees the variables and tensors it made', async () => {
    const renamed = structuredClone(mlpArtifact);
    const { weightsManifest } = renamed.modelJson as { weightsManifest: { weights: { name: string }[] }[] };
    for (const spec of weightsManifest[0]!.weights) spec.name = `other/${spec.name}`;
    const ref = modelRef(renamed);
    const store = await ArtifactStore.open(await tempDir());
    await store.ensure(ref);
    // The worker's cache, run in this thread so that its tfjs engine can be inspected.
    const models = new LoadedModelCache(store.rootDir, 64 * 1024 * 1024, {
      maxParameters: 1_000_000,
      maxActivationValues: 1_000_000,
    });
    const held = () => ({
      tensors: tf.memory().numTensors,
      variables: Object.keys(tf.engine().registeredVariables).length,
    });
    const before = held();
    for (let attempt = 0; attempt < 3; attempt += 1) await assert.rejects(models.acquire(ref.key), /target variable/);
    assert.deepEqual(held(), before);
  });

  for (const launcher of [
    { name: 'node --import tsx', args: ['--import', 'tsx'] },
    { name: 'tsx', args: [path.join(REPO_ROOT, 'node_modules/tsx/dist/cli.mjs')] },
  ]) {
    test(`under ${launcher.name}, workers load and the process exits after close()`, async () => {
      const fixture = path.join(REPO_ROOT, 'test/inference/fixtures/engine-lifecycle.ts');
      const child = spawn(process.execPath, [...launcher.args, fixture], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      // A leaked handle keeps the child alive; it would then be killed here and fail the test.
      const killTimer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const exitCode = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      clearTimeout(killTimer);
      assert.equal(exitCode, 0, stderr);
      const result = JSON.parse(stdout.trim()) as { backend: string; shape: number[] };
      assert.deepEqual(result.shape, [2, 3]);
    });
  }
});
