// npm run bench:backends: the three demo models on each inference backend (native TensorFlow, WebAssembly, plain
// JavaScript), side by side, through the inference engine as the server runs them: one worker (a 2-core machine's
// default), one caller sending calls of 1, 8 and 64 instances back to back. Prints a markdown table of the median
// milliseconds per call and the instances per second. Uses the trained models in demo/artifacts when
// `npm run demo:train -- --cnn` made them, else the same architectures untrained (the same cost). A backend that
// cannot start here (tensorflow before `npm run setup:native`) gets a line saying why.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { buildCnn, buildMlp, buildTextClassifier } from '../demo/models.js';
import { applyTensorflowDefaults } from '../src/config.js';
import { BACKEND_NAMES, type BackendName } from '../src/inference/backend-names.js';
import { InferenceEngine, type ModelArtifact, type TensorInput } from '../src/inference/engine.js';
import { modelRef, toArtifact } from '../test/inference/models.js';
import { MEASURE_MS, percentile, WARMUP_MS } from './support.js';

const BATCHES = [1, 8, 64];
const IMAGE: [number, number, number] = [28, 28, 1];
const TEXT_LENGTH = 256;
const VOCABULARY = 10_000;

interface BenchModel {
  slug: string;
  trained: boolean;
  artifact: ModelArtifact;
  /** `instances` inputs of the kind the model takes, deterministic. */
  input(instances: number): TensorInput;
}

interface Cell {
  p50Ms: number;
  instancesPerSecond: number;
}

const imageInput = (instances: number): TensorInput => {
  const data = Float32Array.from({ length: instances * 784 }, (_, i) => ((i * 7919) % 256) / 255);
  return { data, shape: [instances, ...IMAGE], dtype: 'float32' };
};

const textInput = (instances: number): TensorInput => {
  const data = Int32Array.from({ length: instances * TEXT_LENGTH }, (_, i) => (i * 7919) % VOCABULARY);
  return { data, shape: [instances, TEXT_LENGTH], dtype: 'int32' };
};

/** The trained demo model in demo/artifacts/<slug>, else `untrained` saved the same way. */
async function demoArtifact(slug: string, untrained: () => tf.LayersModel): Promise<[ModelArtifact, boolean]> {
  const dir = path.resolve('demo/artifacts', slug);
  try {
    const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as object;
    return [{ modelJson, weights: new Uint8Array(await readFile(path.join(dir, 'model.weights.bin'))) }, true];
  } catch {
    const model = untrained();
    const artifact = await toArtifact(model);
    model.dispose();
    return [artifact, false];
  }
}

async function demoModels(): Promise<BenchModel[]> {
  const specs = [
    { slug: 'mnist-mlp', build: () => buildMlp(IMAGE, 10), input: imageInput },
    { slug: 'mnist-cnn', build: () => buildCnn(IMAGE, 10), input: imageInput },
    { slug: 'spam-classifier', build: () => buildTextClassifier(VOCABULARY, TEXT_LENGTH, 2), input: textInput },
  ];
  const models: BenchModel[] = [];
  for (const { slug, build, input } of specs) {
    const [artifact, trained] = await demoArtifact(slug, build);
    models.push({ slug, trained, artifact, input });
  }
  return models;
}

/** Calls of `instances` instances back to back: WARMUP_MS unmeasured, then MEASURE_MS measured. */
async function measure(engine: InferenceEngine, model: BenchModel, instances: number): Promise<Cell> {
  const ref = modelRef(model.artifact);
  const input = model.input(instances);
  for (const warmEnd = performance.now() + WARMUP_MS; performance.now() < warmEnd;) await engine.predict(ref, input);
  const latenciesMs: number[] = [];
  const startedAt = performance.now();
  while (performance.now() - startedAt < MEASURE_MS) {
    const callStart = performance.now();
    await engine.predict(ref, input);
    latenciesMs.push(performance.now() - callStart);
  }
  const elapsedMs = performance.now() - startedAt;
  latenciesMs.sort((a, b) => a - b);
  return {
    p50Ms: percentile(latenciesMs, 50),
    instancesPerSecond: (latenciesMs.length * instances * 1000) / elapsedMs,
  };
}

async function benchBackend(backend: BackendName, models: BenchModel[]): Promise<Map<string, Cell> | string> {
  const artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-bench-backends-'));
  let engine: InferenceEngine;
  try {
    engine = await InferenceEngine.start({
      workers: 1,
      maxBatchSize: 64,
      maxWaitMs: 2,
      maxQueueDepth: 4096,
      cacheBytes: 256 * 1024 * 1024,
      artifactDir,
      batching: true,
      backend,
    });
  } catch (error) {
    await rm(artifactDir, { recursive: true, force: true });
    return (error as Error).message;
  }
  const cells = new Map<string, Cell>();
  try {
    for (const model of models) {
      await engine.warm(modelRef(model.artifact));
      for (const batch of BATCHES) cells.set(`${model.slug}/${batch}`, await measure(engine, model, batch));
    }
  } finally {
    await engine.close();
    await rm(artifactDir, { recursive: true, force: true });
  }
  return cells;
}

// libtensorflow as npm start configures it (one thread per worker, quiet), before any engine loads it.
applyTensorflowDefaults();
const models = await demoModels();
const results = new Map<BackendName, Map<string, Cell>>();
const unavailable: string[] = [];
for (const backend of BACKEND_NAMES) {
  console.error(`measuring ${backend}…`);
  const outcome = await benchBackend(backend, models);
  if (typeof outcome === 'string') unavailable.push(`- ${backend}: not measured: ${outcome}`);
  else results.set(backend, outcome);
}

const measured = [...results.keys()];
console.log(
  `${new Date().toISOString().slice(0, 10)}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim()}), ` +
    `Node ${process.version}; one engine worker, one caller, ${MEASURE_MS} ms per cell; ` +
    `models: ${models.map((m) => `${m.slug} ${m.trained ? 'trained' : 'untrained (same architecture)'}`).join(', ')}\n`,
);
console.log(`| model | batch | ${measured.map((b) => `${b} p50 ms | ${b} instances/s`).join(' | ')} |`);
console.log(`| --- | ---: | ${measured.map(() => '---: | ---:').join(' | ')} |`);
for (const model of models) {
  for (const batch of BATCHES) {
    const cells = measured.map((backend) => {
      const cell = results.get(backend)!.get(`${model.slug}/${batch}`)!;
      return `${cell.p50Ms.toFixed(2)} | ${cell.instancesPerSecond.toFixed(0)}`;
    });
    console.log(`| ${model.slug} | ${batch} | ${cells.join(' | ')} |`);
  }
}
if (unavailable.length) console.log(`\n${unavailable.join('\n')}`);
