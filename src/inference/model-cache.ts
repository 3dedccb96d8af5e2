import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { LRUCache } from 'lru-cache';
import { MODEL_JSON_FILE } from './artifact-store.js';
import { assertDeclaredWeights, type ModelBudget } from './declared-weights.js';
import { isGraphModelJson, loadGraphModel } from './graph-model.js';
import type { ModelSignature } from './worker-protocol.js';

/** A layers model, or a graph model (`format: "graph-model"`); both `predict` a batch and `dispose`. */
export type ServedModel = tf.LayersModel | tf.GraphModel;

interface LoadedModel {
  model: ServedModel;
  signature: ModelSignature;
  weightBytes: number;
}

export interface ModelLease {
  model: ServedModel;
  signature: ModelSignature;
  cacheHit: boolean;
  /** Call when done with the model; disposes it if it was too big to cache. */
  release(): void;
}

/**
 * A worker's loaded models, keyed by artifact sha256 and bounded by weight bytes.
 * Each worker runs one task at a time (piscina `concurrentTasksPerWorker: 1`), so a model
 * cannot be evicted while another task is using it and loads need no de-duplication.
 */
export class LoadedModelCache {
  private readonly models: LRUCache<string, LoadedModel>;
  private readonly capacityBytes: number;
  private evictions = 0;

  constructor(
    private readonly artifactDir: string,
    capacityBytes: number,
    private readonly budget: ModelBudget,
  ) {
    this.capacityBytes = Math.max(0, Math.floor(capacityBytes));
    this.models = new LRUCache<string, LoadedModel>({
      maxSize: Math.max(1, this.capacityBytes),
      sizeCalculation: (loaded) => Math.max(1, loaded.weightBytes),
      dispose: (loaded, _key, reason) => {
        loaded.model.dispose();
        if (reason === 'evict') this.evictions += 1;
      },
    });
  }

  async acquire(key: string): Promise<ModelLease> {
    const cached = this.models.get(key);
    if (cached) return { model: cached.model, signature: cached.signature, cacheHit: true, release: () => {} };

    const loaded = await loadModelFromDir(path.join(this.artifactDir, key), this.budget);
    if (loaded.weightBytes <= this.capacityBytes) {
      this.models.set(key, loaded);
      return { model: loaded.model, signature: loaded.signature, cacheHit: false, release: () => {} };
    }
    // Larger than the whole budget: serve this task, then free it rather than evicting everything.
    return {
      model: loaded.model,
      signature: loaded.signature,
      cacheHit: false,
      release: () => loaded.model.dispose(),
    };
  }

  /** Evictions since the previous call, so each task result reports only its own. */
  takeEvictions(): number {
    const evictions = this.evictions;
    this.evictions = 0;
    return evictions;
  }
}

/**
 * Loads a model from a file-cache entry written by `ArtifactStore`: a layers model once its topology is known
 * to build exactly the weights its manifest holds, a graph model once graph-model.ts has checked its graph.
 */
async function loadModelFromDir(entryDir: string, budget: ModelBudget): Promise<LoadedModel> {
  const modelJson = JSON.parse(await readFile(path.join(entryDir, MODEL_JSON_FILE), 'utf8')) as tf.io.ModelJSON;
  let weightBytes = 0;
  const handler: tf.io.IOHandler = {
    load: () =>
      tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        // Shard files in manifest order form the weight buffer; tfjs accepts them unjoined.
        const shards: ArrayBuffer[] = [];
        for (const group of manifest) {
          for (const fileName of group.paths) {
            const shard = await readFile(path.join(entryDir, fileName));
            shards.push(toExactArrayBuffer(shard));
            weightBytes += shard.byteLength;
          }
        }
        return [tf.io.getWeightSpecs(manifest), shards];
      }),
  };
  if (isGraphModelJson(modelJson)) {
    const { model, signature } = await loadGraphModel(modelJson, handler, budget);
    return { model, signature, weightBytes };
  }
  await assertDeclaredWeights(modelJson, budget);
  const model = await freeingOnFailure(() => tf.loadLayersModel(handler));
  return { model, signature: signatureOf(model), weightBytes };
}

/**
 * Runs a model load so that a failure frees the tensors and variables it created: tfjs keeps the
 * variables of a model whose weights turned out not to fit (they are registered by name, not scoped).
 */
async function freeingOnFailure(load: () => Promise<tf.LayersModel>): Promise<tf.LayersModel> {
  const engine = tf.engine();
  const variablesBefore = new Set(Object.keys(engine.registeredVariables));
  // A worker runs one task at a time, so nothing else allocates inside this scope while the load awaits.
  engine.startScope();
  try {
    return await load();
  } catch (error) {
    for (const [name, variable] of Object.entries(engine.registeredVariables)) {
      if (!variablesBefore.has(name)) variable.dispose();
    }
    throw error;
  } finally {
    // Variables outlive scopes; what the load left unreferenced (decoded weight tensors) goes.
    engine.endScope();
  }
}

/**
 * Names are the layers' (stable across loads; tfjs suffixes symbolic tensor names it has seen before), read from
 * each tensor's source layer: a loaded Sequential model leaves `inputNames` unset until it is first run.
 */
function signatureOf(model: tf.LayersModel): ModelSignature {
  return {
    inputs: model.inputs.map((input) => ({
      name: input.sourceLayer.name,
      shape: input.shape,
      dtype: input.dtype,
      embeddingInputDim: embeddingInputDim(model, input),
    })),
    outputs: model.outputs.map((output) => ({ name: output.sourceLayer.name, shape: output.shape })),
  };
}

/** Read from the built graph, so every saved layout (Sequential, functional, Keras 2 or 3) is covered. */
function embeddingInputDim(model: tf.LayersModel, input: tf.SymbolicTensor): number | null {
  // The input tensor, not the input layer: a Sequential model lists no input layers.
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Embedding') continue;
    if (!layer.inboundNodes.some((node) => node.inputTensors.includes(input))) continue;
    const { inputDim } = layer.getConfig() as { inputDim?: unknown };
    if (typeof inputDim === 'number' && Number.isInteger(inputDim) && inputDim > 0) return inputDim;
  }
  return null;
}

function toExactArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  // Node may return a view into a larger pooled buffer; tfjs needs exactly the file's bytes.
  const { buffer, byteOffset, byteLength } = bytes;
  if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength) return buffer;
  return bytes.slice().buffer;
}
