/**
 * The check a worker runs before loading a model: the weights its topology would create must be
 * exactly those its manifest holds, within the parameter budget, and no layer's output may exceed
 * the activation budget. tfjs builds (and initialises) every layer's variables before it compares
 * them with the weights, and a WebAssembly memory never shrinks, so a topology that declares more
 * than its manifest must be refused unbuilt; a layer whose output is huge (a weightless
 * RepeatVector of 2^28) would break the worker's runtime on every call.
 */
import * as tf from '@tensorflow/tfjs';
import { parameterCount } from './artifact-store.js';
import { InferenceArtifactError } from './errors.js';

interface DeclaredWeight {
  layer: string;
  shape: number[];
}

type AddWeight = (this: tf.layers.Layer, name: string, shape: number[]) => unknown;

/** What a model may take in a worker; checked before any of its tensors is allocated. */
export interface ModelBudget {
  /** Weight values the topology declares (and the manifest holds). */
  maxParameters: number;
  /** Values of any one layer's output for one instance (unknown dimensions count as 1). */
  maxActivationValues: number;
}

interface LayerOutput {
  layer: string;
  values: number;
}

/**
 * The weights the topology declares, found by building it with tfjs's own layer code while
 * `Layer.addWeight` only records its calls: every layer type, wrapper and nested model is covered
 * and no weight tensor is allocated. Tensors a build makes outside addWeight are freed.
 */
async function declaredWeights(
  modelTopology: tf.io.ModelJSON['modelTopology'],
): Promise<{ declared: DeclaredWeight[]; largestOutput: LayerOutput | null }> {
  const layerPrototype = tf.layers.Layer.prototype as unknown as { addWeight: AddWeight };
  const addWeight = layerPrototype.addWeight;
  const declared: DeclaredWeight[] = [];
  layerPrototype.addWeight = function (name, shape) {
    declared.push({ layer: this.name, shape });
    // Layer builds only keep the variable; nothing reads it until weights are set, which never happens here.
    return { name, shape, dispose() {} };
  };
  tf.engine().startScope();
  try {
    // Without a weightsManifest, modelFromJSON builds the model and loads nothing.
    const model = await tf.models.modelFromJSON({ modelTopology } as unknown as Parameters<
      typeof tf.models.modelFromJSON
    >[0]);
    return { declared, largestOutput: largestLayerOutput(model.layers) };
  } finally {
    tf.engine().endScope();
    layerPrototype.addWeight = addWeight;
  }
}

/** The layer (nested models' layers included) whose output holds the most values per instance. */
function largestLayerOutput(layers: tf.layers.Layer[]): LayerOutput | null {
  let largest: LayerOutput | null = null;
  for (let pending = [...layers], layer = pending.pop(); layer; layer = pending.pop()) {
    if (layer instanceof tf.LayersModel) pending.push(...layer.layers);
    let shapes: (number | null)[][];
    try {
      const shape = layer.outputShape;
      shapes = Array.isArray(shape[0]) ? (shape as (number | null)[][]) : [shape as (number | null)[]];
    } catch {
      // A layer applied to inputs of several shapes has no single output shape; its callers' outputs still count.
      continue;
    }
    for (const shape of shapes) {
      const values = shape.slice(1).reduce<number>((size, dim) => size * (dim ?? 1), 1);
      if (!largest || values > largest.values) largest = { layer: layer.name, values };
    }
  }
  return largest;
}

/**
 * Refuses, before anything is built, layers that fix the batch size or keep state between calls: building
 * them allocates state for the whole fixed batch (outside addWeight, so unbudgeted), a server batches
 * different callers' instances together, and state carried from one call to the next would leak one
 * caller's inputs into another's answers.
 */
function assertServable(topology: unknown): void {
  const pending: unknown[] = [topology];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      pending.push(...node);
      continue;
    }
    const record = node as Record<string, unknown>;
    const layer = typeof record.name === 'string' ? `layer ${record.name}` : 'a layer';
    if (record.stateful === true) {
      throw new InferenceArtifactError(`${layer} is stateful; served models keep no state between calls`);
    }
    const batchShape = record.batch_input_shape ?? record.batch_shape;
    const fixedBatch = Array.isArray(batchShape) ? batchShape[0] : record.batch_size;
    if (typeof fixedBatch === 'number') {
      throw new InferenceArtifactError(
        `${layer} fixes the batch size to ${fixedBatch}; served models must take any number of instances`,
      );
    }
    pending.push(...Object.values(record));
  }
}

function shapeKey(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Refuses (`InferenceArtifactError`, naming the layer) a model whose topology declares a weight the
 * manifest does not hold, more than `maxParameters` parameters, or a layer output of more than
 * `maxActivationValues` values per instance. Runs in a worker: modelFromJSON
 * needs tfjs's layer registry, and a hostile topology's build must not hold the event loop.
 */
export async function assertDeclaredWeights(modelJson: tf.io.ModelJSON, budget: ModelBudget): Promise<void> {
  const { maxParameters, maxActivationValues } = budget;
  assertServable(modelJson.modelTopology);
  let built: Awaited<ReturnType<typeof declaredWeights>>;
  try {
    built = await declaredWeights(modelJson.modelTopology);
  } catch (error) {
    throw new InferenceArtifactError(`the model topology does not build: ${(error as Error).message}`);
  }
  const { declared, largestOutput } = built;
  if (largestOutput && largestOutput.values > maxActivationValues) {
    throw new InferenceArtifactError(
      `layer ${largestOutput.layer} outputs ${largestOutput.values} values per instance; at most ${maxActivationValues} are served`,
    );
  }
  for (const { layer, shape } of declared) {
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      throw new InferenceArtifactError(`layer ${layer} declares a weight of invalid shape ${shapeKey(shape)}`);
    }
  }
  const parameters = declared.reduce((sum, weight) => sum + parameterCount(weight.shape), 0);
  if (parameters > maxParameters) {
    const largest = declared.reduce((a, b) => (parameterCount(b.shape) > parameterCount(a.shape) ? b : a));
    throw new InferenceArtifactError(
      `the model declares ${parameters} parameters (layer ${largest.layer} has a weight of shape ${shapeKey(largest.shape)}); at most ${maxParameters} are served`,
    );
  }
  // Shapes, not names: tfjs matches weights to variables by name itself, after this check bounded what it builds.
  const unclaimed = new Map<string, tf.io.WeightsManifestEntry[]>();
  const layerWeights = modelJson.weightsManifest.flatMap((group) => group.weights);
  // A model saved with includeOptimizer also holds optimizer state; no layer declares it (the manifest budget bounds it).
  for (const spec of layerWeights.filter((weight) => weight.group !== 'optimizer')) {
    const key = shapeKey(spec.shape);
    const specs = unclaimed.get(key);
    if (specs) specs.push(spec);
    else unclaimed.set(key, [spec]);
  }
  for (const { layer, shape } of declared) {
    if (!unclaimed.get(shapeKey(shape))?.pop()) {
      throw new InferenceArtifactError(
        `layer ${layer} declares a weight of shape ${shapeKey(shape)} that weightsManifest does not hold`,
      );
    }
  }
  const [extra] = [...unclaimed.values()].flat();
  if (extra) {
    throw new InferenceArtifactError(
      `weightsManifest holds ${extra.name} of shape ${shapeKey(extra.shape)}, which no layer of the topology declares`,
    );
  }
}
