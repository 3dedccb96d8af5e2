/**
 * Piscina worker: runs model loads and batched predictions off the main event loop.
 *
 * Keep this module free of top-level await: under tsx on Node 20, worker threads load
 * TypeScript through tsx's CommonJS hook (its ESM hooks are not active in workers), and
 * CommonJS cannot wait at top level. Backend initialisation therefore happens on first use.
 */
import { workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { attribute, GradientsUnsupportedError, type Attributions } from './attributions.js';
import { initBackend } from './backend.js';
import { LoadedModelCache, type ModelLease, type ServedModel } from './model-cache.js';
import type {
  AttributionsResult,
  AttributionsTask,
  DescribeResult,
  DescribeTask,
  LayerInputsTask,
  LoadResult,
  PredictManyResult,
  PredictManyTask,
  PredictResult,
  PredictTask,
  TaskFailure,
  WorkerConfig,
  WorkerTask,
} from './worker-protocol.js';

const STARTUP_TIMEOUT_MS = 60_000;

const config = workerData as WorkerConfig;
const models = new LoadedModelCache(config.artifactDir, config.cacheBytes, config.budget);

// What a broken runtime throws: wasm traps (WebAssembly.RuntimeError), emscripten aborts, failed allocations.
const RUNTIME_FAILURE =
  /memory access out of bounds|out of memory|Aborted\(|allocation failed|Invalid typed array length/i;

export default async function runTask(
  task: WorkerTask,
): Promise<DescribeResult | LoadResult | PredictResult | PredictManyResult | AttributionsResult | TaskFailure> {
  // One case per capability; each model-bearing one runs through withModel.
  switch (task.kind) {
    case 'describe':
      return describe(task);
    case 'load':
      return withModel(task, (lease) => ({
        signature: lease.signature,
        cacheHit: lease.cacheHit,
        evictions: models.takeEvictions(),
      }));
    case 'predict':
      return withModel(task, (lease, startedAt) => predictWith(task, lease, startedAt));
    case 'predictMany':
      return withModel(task, (lease, startedAt) => predictMany(task, lease, startedAt));
    case 'layerInputs':
      return withModel(task, (lease, startedAt) => layerInputs(task, lease, startedAt));
    case 'attributions':
      return withModel(task, (lease) => attributions(task, lease));
  }
}

/**
 * The failure to report for `error`, blamed on `stage`, unless the runtime itself broke: then every later
 * task in this thread would fail too, so the thread ends at once, before replying, while piscina still
 * counts it busy and hands it nothing else; piscina fails this task and starts a fresh worker.
 */
function failure(stage: 'input' | 'artifact', error: unknown): TaskFailure {
  const message = error instanceof Error ? error.message : String(error);
  const broken = (error instanceof Error && error.name === 'RuntimeError') || RUNTIME_FAILURE.test(message);
  // In a worker thread, process.exit ends this thread only.
  if (broken) process.exit(1);
  return { failure: stage, message };
}

async function describe(task: DescribeTask): Promise<DescribeResult> {
  try {
    return { backend: await initBackend(config.backend) };
  } finally {
    // Joined whether or not the backend started, so no other worker waits for this one in vain.
    waitForAllWorkers(task);
  }
}

/**
 * Blocks until `task.workers` describe tasks are running at once. A worker runs one task
 * at a time, so that many concurrent describes must be on distinct workers: when they all
 * return, every worker has initialised its backend.
 */
function waitForAllWorkers({ barrier, workers }: DescribeTask): void {
  const joined = new Int32Array(barrier);
  Atomics.add(joined, 0, 1);
  Atomics.notify(joined, 0);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (let seen = Atomics.load(joined, 0); seen < workers; seen = Atomics.load(joined, 0)) {
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) throw new Error(`only ${seen} of ${workers} inference workers started`);
    Atomics.wait(joined, 0, seen, remainingMs);
  }
}

/**
 * Runs `run` on the task's model, loaded (or found in the cache) and leased meanwhile: a model that does not
 * load fails as the artifact's fault, anything `run` throws as the input's.
 */
async function withModel<R>(
  task: { modelKey: string },
  run: (lease: ModelLease, startedAt: number) => R | Promise<R>,
): Promise<R | TaskFailure> {
  await initBackend(config.backend);
  const startedAt = performance.now();
  let lease: ModelLease;
  try {
    lease = await models.acquire(task.modelKey);
  } catch (error) {
    return failure('artifact', error);
  }
  try {
    return await run(lease, startedAt);
  } catch (error) {
    return failure('input', error);
  } finally {
    lease.release();
  }
}

async function predictWith(task: PredictTask, lease: ModelLease, startedAt: number): Promise<PredictResult> {
  return runSingle(lease.model, task, lease, startedAt);
}

/** What the task's layer receives when the model runs on the task's input, one row per instance. */
async function layerInputs(task: LayerInputsTask, lease: ModelLease, startedAt: number): Promise<PredictResult> {
  return runSingle(truncated(lease.model, task.layerName), task, lease, startedAt);
}

/** Runs `model` (of one input) on the task's tensor; answers its first output as float32. */
async function runSingle(
  model: ServedModel,
  task: PredictTask | LayerInputsTask,
  lease: ModelLease,
  startedAt: number,
): Promise<PredictResult> {
  const output = tf.tidy(() => {
    const data = task.dtype === 'float32' ? new Float32Array(task.data) : new Int32Array(task.data);
    // A graph model's predict runs `execute` on its one input and output.
    const prediction = model.predict(tf.tensor(data, task.shape, task.dtype)) as tf.Tensor | tf.Tensor[];
    // Models of several outputs have named signatures and run as predictMany tasks.
    const single = Array.isArray(prediction) ? prediction[0]! : prediction;
    return single.dtype === 'float32' ? single : single.cast('float32');
  });
  let values: Float32Array<ArrayBuffer>;
  try {
    // Backends may hand out their internal storage (cpu does); transfer a copy we own.
    values = new Float32Array(await output.data<'float32'>());
  } finally {
    output.dispose();
  }
  const result: PredictResult = {
    output: values.buffer,
    shape: output.shape,
    seconds: (performance.now() - startedAt) / 1000,
    cacheHit: lease.cacheHit,
    evictions: models.takeEvictions(),
  };
  return transferring(result, [result.output]);
}

/** Runs a model of several inputs or outputs on one tensor per input; answers one tensor per output. */
async function predictMany(task: PredictManyTask, lease: ModelLease, startedAt: number): Promise<PredictManyResult> {
  const outputs = tf.tidy(() => {
    const inputs = task.inputs.map(({ data, dtype, shape }) =>
      tf.tensor(dtype === 'float32' ? new Float32Array(data) : new Int32Array(data), shape, dtype),
    );
    const prediction = lease.model.predict(inputs) as tf.Tensor | tf.Tensor[];
    return (Array.isArray(prediction) ? prediction : [prediction]).map((t) =>
      t.dtype === 'float32' ? t : t.cast('float32'),
    );
  });
  try {
    // Backends may hand out their internal storage (cpu does); transfer copies we own.
    const values = await Promise.all(outputs.map(async (t) => new Float32Array(await t.data<'float32'>())));
    const result: PredictManyResult = {
      outputs: values.map((v, i) => ({ output: v.buffer, shape: outputs[i]!.shape })),
      seconds: (performance.now() - startedAt) / 1000,
      cacheHit: lease.cacheHit,
      evictions: models.takeEvictions(),
    };
    return transferring(
      result,
      values.map((v) => v.buffer),
    );
  } finally {
    for (const t of outputs) t.dispose();
  }
}

/** Gradient attributions of the task's instances (attributions.ts); a model without gradients is `unsupported`. */
async function attributions(task: AttributionsTask, lease: ModelLease): Promise<AttributionsResult | TaskFailure> {
  const data = task.dtype === 'float32' ? new Float32Array(task.data) : new Int32Array(task.data);
  const input = tf.tensor(data, task.shape, task.dtype);
  let computed: Attributions;
  try {
    computed = attribute(lease.model, input, task);
  } catch (error) {
    if (error instanceof GradientsUnsupportedError) return { failure: 'unsupported', message: error.message };
    throw error;
  } finally {
    input.dispose();
  }
  const { attributions, outputs, baselineOutputs } = computed;
  try {
    // Backends may hand out their internal storage (cpu does); transfer copies we own.
    const [values, outputValues, baselineValues] = await Promise.all(
      [attributions, outputs, baselineOutputs].map(async (t) => new Float32Array(await t.data<'float32'>())),
    );
    const result: AttributionsResult = {
      attributions: values!.buffer,
      shape: attributions.shape,
      outputs: outputValues!.buffer,
      baselineOutputs: baselineValues!.buffer,
      outputShape: outputs.shape,
      cacheHit: lease.cacheHit,
      evictions: models.takeEvictions(),
    };
    return transferring(result, [result.attributions, result.outputs, result.baselineOutputs]);
  } finally {
    tf.dispose([attributions, outputs, baselineOutputs]);
  }
}

/** The model up to what `layerName` receives; fails for a graph model, an unknown layer or one with several inputs. */
function truncated(model: ServedModel, layerName: string): tf.LayersModel {
  if (!(model instanceof tf.LayersModel)) throw new Error('only layers models have layers to read the inputs of');
  const input = model.getLayer(layerName).input;
  if (Array.isArray(input)) throw new Error(`layer ${layerName} has several inputs`);
  return tf.model({ inputs: model.inputs, outputs: input });
}

/** Returns `value` such that piscina moves `buffers` to the main thread instead of copying. */
function transferring<T extends object>(value: T, buffers: ArrayBuffer[]): T {
  // Piscina unwraps the movable envelope before the main thread sees it, so callers get a T.
  return move({ [transferableSymbol]: buffers, [valueSymbol]: value }) as unknown as T;
}
