import { Piscina } from 'piscina';
import { siblingWorkerFile, workerExecArgv } from '../server/worker-threads.js';
import type { Registry } from 'prom-client';
import { ArtifactStore, assertModelKey, type ModelRef } from './artifact-store.js';
import type { BackendChoice, BackendName } from './backend-names.js';
import { BatchScheduler } from './batch-scheduler.js';
import {
  InferenceArtifactError,
  InferenceInputError,
  InferenceRuntimeError,
  InferenceUnsupportedError,
} from './errors.js';
import { InferenceMetrics } from './metrics.js';
import { holdNativeBinding } from './native-binding.js';
import type {
  AttributionMethod,
  AttributionsTask,
  DescribeResult,
  DescribeTask,
  InputDtype,
  LayerInputsTask,
  LoadTask,
  ModelSignature,
  PredictManyTask,
  ResultOf,
  TaskFailure,
  WorkerConfig,
  WorkerTask,
} from './worker-protocol.js';

export type { ModelArtifact, ModelRef } from './artifact-store.js';
export type { BackendChoice, BackendName } from './backend-names.js';
export type { ModelSignature } from './worker-protocol.js';
export {
  InferenceArtifactError,
  InferenceClosedError,
  InferenceError,
  InferenceInputError,
  InferenceOverloadedError,
  InferenceRuntimeError,
  InferenceUnsupportedError,
  type InferenceErrorCode,
} from './errors.js';

/** Integrated gradients' Riemann steps when the request names none, and the most it may name. */
export const DEFAULT_ATTRIBUTION_STEPS = 32;
export const MAX_ATTRIBUTION_STEPS = 256;

/** How long a model that broke a worker's runtime is refused (its calls fail at once, without a worker). */
const QUARANTINE_MS = 60_000;

export interface InferenceEngineOptions {
  /** Worker threads, each running one batch at a time. */
  workers: number;
  /** Most instances merged into one dispatched batch. */
  maxBatchSize: number;
  /** Longest a partial batch waits to fill while every worker is busy. */
  maxWaitMs: number;
  /** Most instances admitted but not yet dispatched; beyond it `predict` rejects at once. */
  maxQueueDepth: number;
  /** Loaded-model budget in weight bytes, split evenly across workers. */
  cacheBytes: number;
  /** Directory for the content-addressed artifact file cache. */
  artifactDir: string;
  /** Disk budget of that cache; least recently used entries beyond it are deleted. Unbounded by default. */
  artifactCacheBytes?: number;
  /**
   * Most parameters a served model may have (4 bytes each once loaded), checked against its manifest
   * before it is written and against its topology before any tensor is allocated. Unbounded by default.
   */
  maxParameters?: number;
  /**
   * Most values any one layer may output for one instance (a batch of n takes n times that), checked against
   * the topology before the model is loaded. Unbounded by default.
   */
  maxActivationValues?: number;
  /** false: every request is its own dispatch (the unbatched baseline). */
  batching: boolean;
  /** The tfjs backend every worker runs; `auto` (the default) takes the first that works of tensorflow, wasm, cpu. */
  backend?: BackendChoice;
  /** Registry for the engine's metrics; without one they are not exported. */
  registry?: Registry;
  /** A worker died outside any task (piscina replaces it). Defaults to a process warning. */
  onWorkerError?: (error: Error) => void;
}

export interface TensorInput {
  data: Float32Array | Int32Array;
  /** Full shape including the leading batch dimension (the number of instances). */
  shape: number[];
  dtype: InputDtype;
}

export interface TensorOutput {
  data: Float32Array;
  /** Full shape; the leading dimension equals the request's instance count. */
  shape: number[];
}

export interface AttributionRequest {
  method: AttributionMethod;
  /** Class index (output column) to attribute, one per instance. */
  targets: number[];
  /** Integrated gradients: Riemann steps (default 32, 1..256). */
  steps?: number;
}

export interface AttributionResult {
  /**
   * float32 attributions: the input's shape for float inputs; [instances, tokens] for int32 token inputs
   * (gradients taken at the Embedding layer's output, summed over the embedding dimension).
   */
  attributions: Float32Array;
  shape: number[];
  /**
   * The model's output at the input and at the baseline (all zeros; for tokens: the padding id 0 embedding),
   * [instances, outputs].
   */
  outputs: Float32Array;
  baselineOutputs: Float32Array;
  /** Per instance: |Σ attributions − (f(x)[t] − f(baseline)[t])| (integrated gradients); null for gradient×input. */
  completenessError: (number | null)[];
}

interface PredictRequest {
  modelKey: string;
  /** A list for a model of several inputs or outputs (answered with a list of outputs). */
  input: TensorInput | TensorInput[];
  instances: number;
}

/**
 * Serves tfjs layers models from a pool of worker threads with per-model dynamic micro-batching. See
 * `BatchScheduler` for the batching policy.
 */
export class InferenceEngine {
  private readonly scheduler: BatchScheduler<PredictRequest, TensorOutput | TensorOutput[]>;
  private readonly metrics: InferenceMetrics;
  private closed: Promise<void> | undefined;
  private workerRestarts = 0;
  /** Most instances one attributions call may hold: a batch's worth (each is `steps` gradient points). */
  private readonly maxAttributionInstances: number;
  /** Models that broke a worker's runtime, until when their calls are refused without running. */
  private readonly quarantine = new Map<string, number>();

  private constructor(
    options: InferenceEngineOptions,
    private readonly pool: Piscina,
    private readonly artifacts: ArtifactStore,
    /** The tfjs backend the workers run. */
    readonly backend: BackendName,
  ) {
    this.scheduler = new BatchScheduler(
      {
        slots: options.workers,
        maxBatchSize: options.maxBatchSize,
        maxWaitMs: options.maxWaitMs,
        maxQueueDepth: options.maxQueueDepth,
        batching: options.batching,
      },
      (requests) => this.runPredictBatch(requests),
    );
    this.maxAttributionInstances = options.maxBatchSize;
    this.metrics = new InferenceMetrics(options.registry, () => this.scheduler.queueDepth);
    this.metrics.setBackend(backend);
    // piscina replaces a worker that dies (one whose runtime broke ends itself); closing destroys them all.
    pool.on('workerDestroy', () => {
      if (this.closed) return;
      this.workerRestarts += 1;
      this.metrics.workerRestarts.inc();
    });
  }

  /** Starts the workers and resolves once every one of them has initialised its backend. */
  static async start(options: InferenceEngineOptions): Promise<InferenceEngine> {
    validateOptions(options);
    const maxParameters = options.maxParameters ?? Infinity;
    const artifacts = await ArtifactStore.open(options.artifactDir, options.artifactCacheBytes, maxParameters);
    const backend = options.backend ?? 'auto';
    if (backend === 'tensorflow' || backend === 'auto') holdNativeBinding();
    const workerFile = siblingWorkerFile(import.meta.url, 'worker');
    const workerConfig: WorkerConfig = {
      artifactDir: artifacts.rootDir,
      cacheBytes: Math.floor(options.cacheBytes / options.workers),
      budget: { maxParameters, maxActivationValues: options.maxActivationValues ?? Infinity },
      backend,
    };
    const pool = new Piscina({
      filename: workerFile.href,
      minThreads: options.workers,
      maxThreads: options.workers,
      concurrentTasksPerWorker: 1,
      execArgv: workerExecArgv(workerFile),
      workerData: workerConfig,
    });
    const onWorkerError = options.onWorkerError ?? ((error: Error) => process.emitWarning(error));
    pool.on('error', onWorkerError);
    try {
      return new InferenceEngine(options, pool, artifacts, await describeWorkers(pool, options.workers));
    } catch (error) {
      await pool.destroy();
      throw error;
    }
  }

  /**
   * Runs the model on `input` (a batch of one or more instances) and resolves with the
   * output rows for exactly those instances, in order. Rejects at once with
   * `InferenceOverloadedError` when the queue is full, `InferenceInputError` when the
   * input is malformed.
   */
  predict(model: ModelRef, input: TensorInput): Promise<TensorOutput> {
    try {
      assertModelKey(model.key);
      validateInput(input);
    } catch (error) {
      return Promise.reject(error);
    }
    const [instances = 0, ...rowShape] = input.shape;
    // Only requests that stack into one tensor may share a batch.
    return this.submit(
      model,
      `${model.key}/${input.dtype}/${rowShape.join('x')}`,
      instances,
      input,
    ) as Promise<TensorOutput>;
  }

  /**
   * `predict` for a model of several inputs or outputs: one tensor per input in the model's order, each with
   * the same number of instances; resolves with one tensor per output, in the model's order.
   */
  predictTensors(model: ModelRef, inputs: TensorInput[]): Promise<TensorOutput[]> {
    try {
      assertModelKey(model.key);
      if (inputs.length === 0) throw new InferenceInputError('give at least one input tensor');
      for (const input of inputs) validateInput(input);
      if (new Set(inputs.map((input) => input.shape[0])).size !== 1) {
        throw new InferenceInputError('every input tensor must hold the same number of instances');
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const groupKey = `${model.key}/${inputs.map((input) => `${input.dtype}/${input.shape.slice(1).join('x')}`).join('+')}`;
    return this.submit(model, groupKey, inputs[0]!.shape[0]!, inputs) as Promise<TensorOutput[]>;
  }

  /** Queues a checked request in its group (requests that stack into the same tensors), unless quarantined. */
  private submit(
    model: ModelRef,
    groupKey: string,
    instances: number,
    input: TensorInput | TensorInput[],
  ): Promise<TensorOutput | TensorOutput[]> {
    const quarantined = this.quarantined(model.key);
    if (quarantined) return Promise.reject(quarantined);
    return this.pinned(model.key, () =>
      this.scheduler.submit(groupKey, instances, { modelKey: model.key, input, instances }, () =>
        this.artifacts.ensure(model),
      ),
    );
  }

  /**
   * Writes the artifact to the file cache and loads it in one worker (the others load it on
   * first use), failing if the model cannot be served. Meant for publish time.
   */
  async warm(model: ModelRef): Promise<void> {
    await this.inspect(model);
  }

  /**
   * What the named layer receives when the model runs on `input` (the features a watermark is shaped
   * for), one row per instance. Not batched with predictions; meant for publish time.
   */
  async layerInputs(model: ModelRef, layerName: string, input: TensorInput): Promise<TensorOutput> {
    validateInput(input);
    const data = input.data.slice();
    const task: LayerInputsTask = {
      kind: 'layerInputs',
      modelKey: model.key,
      layerName,
      data: data.buffer,
      dtype: input.dtype,
      shape: input.shape,
    };
    const result = await this.runAlone(model, task, [data.buffer]);
    return { data: new Float32Array(result.output), shape: result.shape };
  }

  /**
   * Gradient attributions of each instance of `input` for its target output column: integrated gradients
   * (from an all-zeros baseline, `steps` midpoint-rule points per instance) or gradient × input. Runs in a
   * worker on the cached model as one job of its own (it is a batch in itself: instances × steps points),
   * holding one worker slot like a predict batch, so predictions fill and stage meanwhile instead of piling
   * onto a busy worker. Rejects with `InferenceInputError` for a malformed input or request (a target outside
   * the outputs), `InferenceUnsupportedError` for a model without gradients (a graph model: use a method that
   * needs only predictions).
   */
  async attributions(model: ModelRef, input: TensorInput, request: AttributionRequest): Promise<AttributionResult> {
    validateInput(input);
    const instances = input.shape[0]!;
    const steps = validateAttributionRequest(request, instances, this.maxAttributionInstances);
    const data = input.data.slice();
    const task: AttributionsTask = {
      kind: 'attributions',
      modelKey: model.key,
      data: data.buffer,
      dtype: input.dtype,
      shape: input.shape,
      method: request.method,
      targets: request.targets,
      steps,
    };
    // Admitted like predict, counting its gradient points (instances × steps: each is a forward and backward
    // pass of one instance) against the queue depth, since that is the work predict's queued instances stand
    // for; one shared bound, so neither kind of call can fill the workers past it with the other.
    const points = request.method === 'INTEGRATED_GRADIENTS' ? instances * steps : instances;
    const result = await this.runAlone(model, task, [data.buffer], points);
    const attributions = new Float32Array(result.attributions);
    const outputs = new Float32Array(result.outputs);
    const baselineOutputs = new Float32Array(result.baselineOutputs);
    const columns = result.outputShape[1]!;
    const rowSize = attributions.length / instances;
    const completenessError = request.targets.map((target, i) => {
      if (request.method !== 'INTEGRATED_GRADIENTS') return null;
      let total = 0;
      for (let j = i * rowSize; j < (i + 1) * rowSize; j += 1) total += attributions[j]!;
      const change = outputs[i * columns + target]! - baselineOutputs[i * columns + target]!;
      return Math.abs(total - change);
    });
    return { attributions, shape: result.shape, outputs, baselineOutputs, completenessError };
  }

  /** The input/output signature of the model, loading it if needed. */
  async inspect(model: ModelRef): Promise<ModelSignature> {
    return (await this.runAlone(model, { kind: 'load', modelKey: model.key })).signature;
  }

  /**
   * One worker task on the model, outside any batch: its files on disk and pinned, a worker slot held. With a
   * `weight` it goes through the queue's admission (`BatchScheduler.runAlone`); without, it takes a slot at once
   * (model loads and publish-time layer inputs: the service's own work, not a caller's).
   */
  private async runAlone<T extends LoadTask | LayerInputsTask | AttributionsTask>(
    model: ModelRef,
    task: T,
    transferList: ArrayBuffer[] = [],
    weight?: number,
  ): Promise<ResultOf<T>> {
    assertModelKey(model.key);
    const quarantined = this.quarantined(model.key);
    if (quarantined) throw quarantined;
    const result = await this.pinned(model.key, async () => {
      await this.artifacts.ensure(model);
      const work = () => this.runOnWorker(model.key, task, transferList);
      return weight === undefined ? this.scheduler.occupySlot(work) : this.scheduler.runAlone(weight, work);
    });
    this.metrics.recordCacheUse(result);
    return result;
  }

  /**
   * Runs a task for one model; a model that breaks a worker's runtime is refused for QUARANTINE_MS after,
   * so calling it in a loop cannot keep every worker restarting (and every cached model reloading).
   */
  private async runOnWorker<T extends WorkerTask>(
    modelKey: string,
    task: T,
    transferList: ArrayBuffer[] = [],
  ): Promise<ResultOf<T>> {
    try {
      return await runWorkerTask(this.pool, task, transferList);
    } catch (error) {
      if (error instanceof InferenceRuntimeError) this.quarantine.set(modelKey, Date.now() + QUARANTINE_MS);
      throw error;
    }
  }

  private quarantined(modelKey: string): InferenceRuntimeError | null {
    const until = this.quarantine.get(modelKey);
    if (until === undefined) return null;
    if (until <= Date.now()) {
      this.quarantine.delete(modelKey);
      return null;
    }
    return new InferenceRuntimeError(
      `this model broke an inference worker; it is not run again for ${Math.ceil((until - Date.now()) / 1000)} s`,
    );
  }

  /** Runs `work` with the model's cache entry safe from eviction (a worker may read its files meanwhile). */
  private async pinned<T>(key: string, work: () => Promise<T>): Promise<T> {
    this.artifacts.pin(key);
    try {
      return await work();
    } finally {
      this.artifacts.unpin(key);
    }
  }

  /** `workers`: live worker threads (0: none can serve); `workerRestarts`: workers replaced since start. */
  stats(): { queueDepth: number; inFlight: number; workers: number; workerRestarts: number } {
    return {
      queueDepth: this.scheduler.queueDepth,
      inFlight: this.scheduler.inFlight,
      workers: this.pool.threads.length,
      workerRestarts: this.workerRestarts,
    };
  }

  /** Rejects new work, finishes everything already admitted, then stops the workers. */
  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    await this.scheduler.drain();
    await this.pool.destroy();
    this.metrics.unregister();
  }

  private async runPredictBatch(requests: PredictRequest[]): Promise<(TensorOutput | TensorOutput[])[]> {
    const [first] = requests;
    if (!first) return [];
    // A group holds requests of one form (the group key says how many tensors and their shapes).
    if (Array.isArray(first.input)) return this.runTensorsBatch(first.modelKey, requests);
    const { dtype } = first.input;
    const rowShape = first.input.shape.slice(1);
    const instances = requests.reduce((sum, request) => sum + request.instances, 0);
    const data = stacked(requests.map((request) => request.input as TensorInput));
    const result = await this.runOnWorker(
      first.modelKey,
      { kind: 'predict', modelKey: first.modelKey, data: data.buffer, dtype, shape: [instances, ...rowShape] },
      [data.buffer],
    );
    this.metrics.recordCacheUse(result);
    this.metrics.batchSize.observe(instances);
    this.metrics.inferenceSeconds.observe(result.seconds);
    return splitRows(
      new Float32Array(result.output),
      result.shape,
      requests.map((request) => request.instances),
    );
  }

  /** A batch of requests of several tensors: each input stacked across requests, each output split back. */
  private async runTensorsBatch(modelKey: string, requests: PredictRequest[]): Promise<TensorOutput[][]> {
    const byRequest = requests.map((request) => request.input as TensorInput[]);
    const instances = requests.reduce((sum, request) => sum + request.instances, 0);
    const inputs = byRequest[0]!.map((input, j) => {
      const data = stacked(byRequest.map((tensors) => tensors[j]!));
      return { data: data.buffer, dtype: input.dtype, shape: [instances, ...input.shape.slice(1)] };
    });
    const task: PredictManyTask = { kind: 'predictMany', modelKey, inputs };
    const result = await this.runOnWorker(
      modelKey,
      task,
      inputs.map((input) => input.data),
    );
    this.metrics.recordCacheUse(result);
    this.metrics.batchSize.observe(instances);
    this.metrics.inferenceSeconds.observe(result.seconds);
    const rowCounts = requests.map((request) => request.instances);
    // Split per output, then regrouped per request.
    const perOutput = result.outputs.map(({ output, shape }) => splitRows(new Float32Array(output), shape, rowCounts));
    return requests.map((_, r) => perOutput.map((splits) => splits[r]!));
  }
}

/** The inputs' data in one fresh buffer (which can be transferred to the worker; callers keep their inputs). */
function stacked(inputs: TensorInput[]): Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer> {
  const length = inputs.reduce((sum, input) => sum + input.data.length, 0);
  const data = inputs[0]!.dtype === 'float32' ? new Float32Array(length) : new Int32Array(length);
  let offset = 0;
  for (const input of inputs) {
    data.set(input.data, offset);
    offset += input.data.length;
  }
  return data;
}

/** Runs a task on some worker; what tfjs refused arrives as the matching typed error. */
async function runWorkerTask<T extends WorkerTask>(
  pool: Piscina,
  task: T,
  transferList: ArrayBuffer[] = [],
): Promise<ResultOf<T>> {
  let result: ResultOf<T> | TaskFailure;
  try {
    // piscina types results as any; worker.ts returns ResultOf<T> or a TaskFailure for each task type.
    result = (await pool.run(task, { transferList })) as ResultOf<T> | TaskFailure;
  } catch (error) {
    // The worker's runtime broke and it ended itself (or it died otherwise): piscina starts a replacement.
    throw new InferenceRuntimeError(`inference worker failed: ${(error as Error).message}`);
  }
  if ('failure' in result) {
    if (result.failure === 'unsupported') throw new InferenceUnsupportedError(result.message);
    throw result.failure === 'input'
      ? new InferenceInputError(result.message)
      : new InferenceArtifactError(result.message);
  }
  return result;
}

/**
 * Runs one describe task per worker at once; they only return when all workers are up. A worker whose backend
 * cannot be initialised throws, and its message (which backend, why, what to do) is why the engine fails to start.
 */
async function describeWorkers(pool: Piscina, workers: number): Promise<BackendName> {
  const barrier = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const task: DescribeTask = { kind: 'describe', workers, barrier };
  // piscina types results as any; worker.ts answers a describe task with a DescribeResult.
  const described = (await Promise.all(Array.from({ length: workers }, () => pool.run(task)))) as DescribeResult[];
  const backends = new Set(described.map((result) => result.backend));
  const [backend] = backends;
  if (backend === undefined || backends.size > 1) {
    throw new Error(`inference workers selected different backends: ${[...backends].join(', ')}`);
  }
  return backend;
}

/** Splits batch output rows back into one output per request, in request order. */
function splitRows(output: Float32Array, shape: number[], rowCounts: number[]): TensorOutput[] {
  const [outputRows, ...rowShape] = shape;
  const expectedRows = rowCounts.reduce((sum, rows) => sum + rows, 0);
  if (outputRows !== expectedRows) {
    throw new Error(`model returned ${String(outputRows)} rows for a batch of ${expectedRows} instances`);
  }
  if (rowCounts.length === 1) return [{ data: output, shape }];
  const rowSize = rowShape.reduce((size, dim) => size * dim, 1);
  let row = 0;
  return rowCounts.map((rows) => {
    // Copies, not views: callers must not share (or be able to detach) one another's buffer.
    const data = output.slice(row * rowSize, (row + rows) * rowSize);
    row += rows;
    return { data, shape: [rows, ...rowShape] };
  });
}

function validateInput(input: TensorInput): void {
  const { data, shape, dtype } = input;
  const expectedArray = dtype === 'float32' ? Float32Array : dtype === 'int32' ? Int32Array : undefined;
  if (!expectedArray) throw new InferenceInputError(`unsupported input dtype ${String(dtype)}`);
  if (!(data instanceof expectedArray)) throw new InferenceInputError(`a ${dtype} input needs a ${expectedArray.name}`);
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((dim) => Number.isSafeInteger(dim) && dim > 0)) {
    throw new InferenceInputError('input shape must be positive integers, starting with the number of instances');
  }
  const size = shape.reduce((product, dim) => product * dim, 1);
  if (size !== data.length) {
    throw new InferenceInputError(`input shape [${shape.join(', ')}] needs ${size} values but data has ${data.length}`);
  }
}

/** The request's steps (its default for none), once it fits `instances`; else `InferenceInputError`. */
function validateAttributionRequest(request: AttributionRequest, instances: number, maxInstances: number): number {
  if (request.method !== 'INTEGRATED_GRADIENTS' && request.method !== 'GRADIENT_X_INPUT') {
    throw new InferenceInputError(`unknown attribution method ${String(request.method)}`);
  }
  if (instances > maxInstances) {
    throw new InferenceInputError(`attributions take at most ${maxInstances} instances at a time, not ${instances}`);
  }
  const { targets } = request;
  if (!Array.isArray(targets) || targets.length !== instances) {
    throw new InferenceInputError(`give one target per instance (${instances})`);
  }
  if (!targets.every((target) => Number.isSafeInteger(target) && target >= 0)) {
    throw new InferenceInputError('targets must be output column indices (integers >= 0)');
  }
  const steps = request.steps ?? DEFAULT_ATTRIBUTION_STEPS;
  if (!Number.isSafeInteger(steps) || steps < 1 || steps > MAX_ATTRIBUTION_STEPS) {
    throw new InferenceInputError(`steps must be an integer from 1 to ${MAX_ATTRIBUTION_STEPS}`);
  }
  return steps;
}

function validateOptions(options: InferenceEngineOptions): void {
  const positiveIntegers = ['workers', 'maxBatchSize', 'maxQueueDepth'] as const;
  for (const name of positiveIntegers) {
    if (!Number.isSafeInteger(options[name]) || options[name] < 1)
      throw new RangeError(`${name} must be a positive integer`);
  }
  if (!(options.maxWaitMs >= 0 && Number.isFinite(options.maxWaitMs))) throw new RangeError('maxWaitMs must be >= 0');
  if (!(options.cacheBytes >= 0 && Number.isFinite(options.cacheBytes)))
    throw new RangeError('cacheBytes must be >= 0');
  if (!options.artifactDir) throw new RangeError('artifactDir is required');
  if (options.artifactCacheBytes !== undefined && !(options.artifactCacheBytes >= 0))
    throw new RangeError('artifactCacheBytes must be >= 0');
  if (options.maxParameters !== undefined && !(options.maxParameters >= 1))
    throw new RangeError('maxParameters must be >= 1');
  if (options.maxActivationValues !== undefined && !(options.maxActivationValues >= 1))
    throw new RangeError('maxActivationValues must be >= 1');
}

/** The worker module next to this one, with this module's extension (.ts under tsx, .js compiled). */
