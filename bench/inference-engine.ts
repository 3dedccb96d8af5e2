/**
 * Throughput/latency of the inference engine against a bare in-process tfjs loop on a
 * 784-128-10 MLP. Not a test: run with `node --import tsx bench/inference-engine.ts`.
 *
 * - in-process: one loop calling model.predict on a [batch, 784] tensor (blocks the event loop).
 * - engine: `concurrency` closed-loop clients, each awaiting single-instance predicts,
 *   with micro-batching on ("batched") and off ("unbatched").
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Registry } from 'prom-client';
import { initBackend } from '../src/inference/backend.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { buildMlp, distinctRows, modelRef, toArtifact } from '../test/inference/models.js';

const LEVELS = [1, 8, 64];
const WARMUP_MS = 300;
const MEASURE_MS = 2_000;
const FEATURES = 784;

interface Row {
  mode: string;
  level: number;
  instancesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanBatch: number;
}

function percentile(sortedMs: number[], fraction: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor(sortedMs.length * fraction))] ?? NaN;
}

function summarise(
  mode: string,
  level: number,
  instances: number,
  elapsedMs: number,
  latenciesMs: number[],
  meanBatch: number,
): Row {
  const sorted = latenciesMs.sort((a, b) => a - b);
  return {
    mode,
    level,
    instancesPerSecond: (instances / elapsedMs) * 1000,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanBatch,
  };
}

function benchInProcess(model: tf.LayersModel, batch: number): Row {
  const input = tf.tensor2d(distinctRows(batch, FEATURES), [batch, FEATURES]);
  const runOnce = () => tf.tidy(() => (model.predict(input) as tf.Tensor).dataSync());
  for (const warmupEnd = performance.now() + WARMUP_MS; performance.now() < warmupEnd;) runOnce();
  const latenciesMs: number[] = [];
  const startedAt = performance.now();
  while (performance.now() - startedAt < MEASURE_MS) {
    const callStart = performance.now();
    runOnce();
    latenciesMs.push(performance.now() - callStart);
  }
  const elapsedMs = performance.now() - startedAt;
  input.dispose();
  return summarise('in-process tfjs', batch, latenciesMs.length * batch, elapsedMs, latenciesMs, batch);
}

async function batchTotals(registry: Registry): Promise<{ sum: number; count: number }> {
  const exposition = await registry.getSingleMetricAsString('mm_predict_batch_size');
  const value = (suffix: string) => {
    const line = exposition.split('\n').find((text) => text.startsWith(`mm_predict_batch_size${suffix} `));
    return Number(line?.split(' ')[1] ?? 0);
  };
  return { sum: value('_sum'), count: value('_count') };
}

async function benchEngine(batching: boolean, model: tf.LayersModel): Promise<Row[]> {
  const registry = new Registry();
  const artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-bench-'));
  const engine = await InferenceEngine.start({
    workers: os.availableParallelism(),
    maxBatchSize: 64,
    maxWaitMs: 2,
    maxQueueDepth: 4096,
    cacheBytes: 256 * 1024 * 1024,
    artifactDir,
    batching,
    registry,
  });
  const ref = modelRef(await toArtifact(model));
  await engine.warm(ref);
  const rows: Row[] = [];
  try {
    for (const concurrency of LEVELS) {
      const inputs = Array.from({ length: concurrency }, (_, i) => distinctRows(1, FEATURES, i));
      const latenciesMs: number[] = [];
      let measuring = false;
      let completed = 0;
      const client = async (input: Float32Array, until: number) => {
        while (performance.now() < until) {
          const callStart = performance.now();
          await engine.predict(ref, { data: input, shape: [1, FEATURES], dtype: 'float32' });
          if (measuring) {
            latenciesMs.push(performance.now() - callStart);
            completed += 1;
          }
        }
      };
      await Promise.all(inputs.map((input) => client(input, performance.now() + WARMUP_MS)));
      const before = await batchTotals(registry);
      measuring = true;
      const startedAt = performance.now();
      await Promise.all(inputs.map((input) => client(input, startedAt + MEASURE_MS)));
      const elapsedMs = performance.now() - startedAt;
      const after = await batchTotals(registry);
      const meanBatch = (after.sum - before.sum) / (after.count - before.count);
      rows.push(
        summarise(
          `engine ${batching ? 'batched' : 'unbatched'} (${engine.backend})`,
          concurrency,
          completed,
          elapsedMs,
          latenciesMs,
          meanBatch,
        ),
      );
    }
  } finally {
    await engine.close();
    await rm(artifactDir, { recursive: true, force: true });
  }
  return rows;
}

const backend = await initBackend('auto');
const model = buildMlp([FEATURES, 128, 10], 42);
const rows: Row[] = [];
for (const batch of LEVELS) rows.push(benchInProcess(model, batch));
rows.push(...(await benchEngine(true, model)));
rows.push(...(await benchEngine(false, model)));

console.log(`backend ${backend}, ${os.availableParallelism()} CPUs, Node ${process.version}, ${MEASURE_MS} ms per row`);
console.log('| mode | batch / concurrency | instances/s | p50 ms | p99 ms | mean batch |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const row of rows) {
  console.log(
    `| ${row.mode} | ${row.level} | ${row.instancesPerSecond.toFixed(0)} | ${row.p50Ms.toFixed(2)} | ${row.p99Ms.toFixed(2)} | ${row.meanBatch.toFixed(1)} |`,
  );
}
