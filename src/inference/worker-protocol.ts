import type { BackendChoice, BackendName } from './backend-names.js';
import type { ModelBudget } from './declared-weights.js';

/** Messages between the engine (main thread) and its piscina workers. */

export interface WorkerConfig {
  artifactDir: string;
  /** Byte budget of this worker's loaded-model LRU (weights bytes). */
  cacheBytes: number;
  /** What a model may take; checked against its topology before any of its tensors is allocated. */
  budget: ModelBudget;
  /** The tfjs backend to initialise; an explicit one that fails fails the engine's start. */
  backend: BackendChoice;
}

export type InputDtype = 'float32' | 'int32';

/** A model's inputs and outputs in its own order, named as its input and output layers are. */
export interface ModelSignature {
  inputs: {
    name: string;
    shape: (number | null)[];
    dtype: string;
    /** `inputDim` of the Embedding layer the input feeds directly, if any: valid ids are below it. */
    embeddingInputDim: number | null;
    /** A graph model's int32 input: nothing bounds its ids (a Gather's assert fails the whole batch) but a declared range. */
    rangeRequired?: true;
  }[];
  outputs: { name: string; shape: (number | null)[] }[];
}

/** Start-up handshake: holds each worker until all have joined (see `waitForAllWorkers`). */
export interface DescribeTask {
  kind: 'describe';
  workers: number;
  /** One Int32 counting the workers that have joined. */
  barrier: SharedArrayBuffer;
}

export interface LoadTask {
  kind: 'load';
  modelKey: string;
}

export interface PredictTask {
  kind: 'predict';
  modelKey: string;
  /** Transferred, not copied: the engine builds a fresh buffer per batch. */
  data: ArrayBuffer;
  dtype: InputDtype;
  shape: number[];
}

/** What one layer of a layers model receives when the model runs on the input (watermark calibration). */
export interface LayerInputsTask {
  kind: 'layerInputs';
  modelKey: string;
  layerName: string;
  /** Transferred like PredictTask's. */
  data: ArrayBuffer;
  dtype: InputDtype;
  shape: number[];
}

/** One input tensor of a model of several, transferred like PredictTask's. */
export interface TensorPayload {
  data: ArrayBuffer;
  dtype: InputDtype;
  shape: number[];
}

/** A batch for a model of several inputs or outputs: one tensor per input, in the model's order. */
export interface PredictManyTask {
  kind: 'predictMany';
  modelKey: string;
  inputs: TensorPayload[];
}

export type AttributionMethod = 'INTEGRATED_GRADIENTS' | 'GRADIENT_X_INPUT';

/** Gradient attributions of a few instances of a one-input, one-output layers model (see attributions.ts). */
export interface AttributionsTask {
  kind: 'attributions';
  modelKey: string;
  /** Transferred, not copied, like PredictTask's. */
  data: ArrayBuffer;
  dtype: InputDtype;
  shape: number[];
  method: AttributionMethod;
  /** The output column to attribute, one per instance. */
  targets: number[];
  /** Integrated gradients' Riemann steps. */
  steps: number;
}

export type WorkerTask = DescribeTask | LoadTask | PredictTask | PredictManyTask | LayerInputsTask | AttributionsTask;

export interface DescribeResult {
  backend: BackendName;
}

/** How the task used the worker's model cache; every model-bearing result carries it. */
export interface CacheReport {
  cacheHit: boolean;
  /** Models evicted from this worker's cache while serving the task. */
  evictions: number;
}

export interface LoadResult extends CacheReport {
  signature: ModelSignature;
}

export interface PredictResult extends CacheReport {
  /** float32 output values, transferred back. */
  output: ArrayBuffer;
  shape: number[];
  /** Time the worker spent on the task, including a model load on a cache miss. */
  seconds: number;
}

export interface PredictManyResult extends CacheReport {
  /** One float32 tensor per model output, in the model's order, transferred back. */
  outputs: { output: ArrayBuffer; shape: number[] }[];
  seconds: number;
}

export interface AttributionsResult extends CacheReport {
  /** float32, transferred back: the input's shape, or [instances, tokens] for token ids. */
  attributions: ArrayBuffer;
  shape: number[];
  /** float32 [instances, outputs] at the input and at the baseline, transferred back. */
  outputs: ArrayBuffer;
  baselineOutputs: ArrayBuffer;
  outputShape: number[];
}

/**
 * A load or predict task that tfjs refused, returned rather than thrown so the engine learns who
 * is to blame (errors lose their type crossing threads). `input`: the input does not fit the
 * model; `artifact`: the model cannot be loaded; `unsupported`: the model cannot do what the task asks of any input (gradients of a
 * graph model). (A worker whose tfjs memory failed ends its thread
 * instead of answering: piscina fails the task and starts a fresh worker.)
 */
export interface TaskFailure {
  failure: 'input' | 'artifact' | 'unsupported';
  message: string;
}

/** The result type the worker returns for each task type (all but describe may return a `TaskFailure`). */
export type ResultOf<T extends WorkerTask> = T extends PredictTask | LayerInputsTask
  ? PredictResult
  : T extends PredictManyTask
    ? PredictManyResult
    : T extends LoadTask
      ? LoadResult
      : T extends AttributionsTask
        ? AttributionsResult
        : DescribeResult;
