/**
 * The check a worker runs before loading a model: the weights its topology would create must be
 * exactly those its manifest holds, within the parameter budget. tfjs builds (and initialises)
 * every layer's variables before it compares them with the weights, and a WebAssembly memory
 * never shrinks, so a topology that declares more than its manifest must be refused unbuilt.
 */
import * as tf from '@tensorflow/tfjs';
import { InferenceArtifactError } from './errors.js';

interface DeclaredWeight {
  layer: string;
  shape: number[];
}

type AddWeight = (this: tf.layers.Layer, name: string, shape: number[]) => unknown;

/**
 * The weights the topology declares, found by building it with tfjs's own layer code while
 * `Layer.addWeight` only records its calls: every layer type, wrapper and nested model is covered
 * and no weight tensor is allocated. Tensors a build makes outside addWeight are freed.
 */
async function declaredWeights(modelTopology: tf.io.ModelJSON['modelTopology']): Promise<DeclaredWeight[]> {
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
    await tf.models.modelFromJSON({ modelTopology } as unknown as Parameters<typeof tf.models.modelFromJSON>[0]);
  } finally {
    tf.engine().endScope();
    layerPrototype.addWeight = addWeight;
  }
  return declared;
}

function shapeKey(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}

function parameterCount(shape: number[]): number {
  return shape.reduce((size, dim) => size * dim, 1);
}

/**
 * Refuses (`InferenceArtifactError`, naming the layer) a model whose topology declares a weight the
 * manifest does not hold, or more than `maxParameters` parameters. Runs in a worker: modelFromJSON
 * needs tfjs's layer registry, and a hostile topology's build must not hold the event loop.
 */
export async function assertDeclaredWeights(modelJson: tf.io.ModelJSON, maxParameters: number): Promise<void> {
  let declared: DeclaredWeight[];
  try {
    declared = await declaredWeights(modelJson.modelTopology);
  } catch (error) {
    throw new InferenceArtifactError(`the model topology does not build: ${(error as Error).message}`);
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
