// Gradient attributions, computed in an inference worker on a loaded layers model: integrated gradients
// (Sundararajan et al. 2017) and gradient × input, both relative to an all-zeros baseline, of one output
// column (the class probability `predict` answers) per instance.
//
// Float inputs are differentiated directly. Token ids (int32 feeding an Embedding layer) are not
// differentiable, so the model is split at its Embedding: attributions are taken in embedding space (between
// the embedding of id 0, the padding id, and the text's embeddings) and summed over the embedding dimension,
// one weight per token. Graph models are refused: tfjs has no gradients for arbitrary GraphDefs.
import * as tf from '@tensorflow/tfjs';
import type { ServedModel } from './model-cache.js';
import type { AttributionMethod } from './worker-protocol.js';

/**
 * Most activation values (per layer output, summed over the layers, for all the points of one
 * forward/backward pass) a pass may hold: 2^23 float32 = 32 MiB kept for the backward pass, which needs about
 * as much again. Integrated gradients' instances × steps points run in as few passes as fit.
 */
const PASS_ACTIVATION_VALUES = 2 ** 23;

/** A model the worker cannot take gradients of, whatever the input (reported as an `unsupported` failure). */
export class GradientsUnsupportedError extends Error {}

export interface AttributionOptions {
  method: AttributionMethod;
  targets: number[];
  steps: number;
}

export interface Attributions {
  /** The input's shape; [instances, ...id shape] for token ids. */
  attributions: tf.Tensor;
  /** [instances, outputs] at the input and at the baseline. */
  outputs: tf.Tensor;
  baselineOutputs: tf.Tensor;
}

/**
 * Where gradients are taken: points of the input's (or the embeddings') space, the model as a function of
 * them, and how an attribution in that space becomes one in the input's form.
 */
interface GradientSpace {
  point: tf.Tensor;
  baseline: tf.Tensor;
  /** The model's output for `points`, each of which belongs to the instance `instances` names. */
  forward(points: tf.Tensor, instances: tf.Tensor1D): tf.Tensor;
  toInputForm(attributions: tf.Tensor): tf.Tensor;
  /** Activation values one point holds in a forward pass. */
  activationValues: number;
}

/**
 * Attributions of `input` (a batch) for the given output columns. The caller disposes the result (this runs
 * in its own scope; nothing else is left behind). Throws `GradientsUnsupportedError` for a model it cannot
 * differentiate, an Error for a target outside the outputs.
 */
export function attribute(model: ServedModel, input: tf.Tensor, options: AttributionOptions): Attributions {
  if (!(model instanceof tf.LayersModel)) {
    throw new GradientsUnsupportedError('gradients are only available for layers models, not graph models');
  }
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new GradientsUnsupportedError('gradients are only available for models of one input and one output');
  }
  const outputShape = model.outputs[0]!.shape;
  const classes = outputShape[1];
  if (outputShape.length !== 2 || typeof classes !== 'number') {
    throw new GradientsUnsupportedError(
      `gradients need an output of one row of scores per instance, not [${outputShape.join(', ')}]`,
    );
  }
  const bad = options.targets.find((target) => target >= classes);
  if (bad !== undefined) throw new Error(`target ${bad} is not an output column (the model has ${classes})`);

  return tf.tidy(() => {
    const space = gradientSpace(model, input);
    const instances = tf.range(0, input.shape[0]!, 1, 'int32') as tf.Tensor1D;
    const delta = tf.sub(space.point, space.baseline);
    const gradients =
      options.method === 'INTEGRATED_GRADIENTS'
        ? averagePathGradient(space, delta, options, classes)
        : gradientAt(space, space.point, instances, options.targets, classes);
    return {
      attributions: space.toInputForm(tf.mul(delta, gradients)),
      outputs: space.forward(space.point, instances),
      baselineOutputs: space.forward(space.baseline, instances),
    };
  });
}

/**
 * Integrated gradients' path integral by the midpoint rule: the mean gradient at baseline + (k + ½)/steps ·
 * (point − baseline), k = 0 … steps − 1. Instances × steps points run in passes of as many as the activation
 * budget allows; each pass's gradients are summed per instance.
 */
function averagePathGradient(
  space: GradientSpace,
  delta: tf.Tensor,
  { steps, targets }: AttributionOptions,
  classes: number,
): tf.Tensor {
  const instanceCount = space.point.shape[0]!;
  const total = instanceCount * steps;
  const perPass = Math.max(1, Math.min(total, Math.floor(PASS_ACTIVATION_VALUES / space.activationValues)));
  const rowRank = space.point.rank - 1;
  let sum = tf.zerosLike(space.point);
  for (let first = 0; first < total; first += perPass) {
    const count = Math.min(perPass, total - first);
    const next = tf.tidy(() => {
      const pointIndex = Array.from({ length: count }, (_, i) => first + i);
      const instanceOf = tf.tensor1d(
        pointIndex.map((p) => Math.floor(p / steps)),
        'int32',
      );
      const alpha = tf.tensor(
        pointIndex.map((p) => ((p % steps) + 0.5) / steps),
        [count, ...Array<number>(rowRank).fill(1)],
      );
      const points = tf.add(tf.gather(space.baseline, instanceOf), tf.mul(alpha, tf.gather(delta, instanceOf)));
      const pointTargets = pointIndex.map((p) => targets[Math.floor(p / steps)]!);
      const gradients = gradientAt(space, points, instanceOf, pointTargets, classes);
      return tf.add(sum, tf.unsortedSegmentSum(gradients, instanceOf, instanceCount));
    });
    sum.dispose();
    sum = next;
  }
  return tf.div(sum, steps);
}

/** ∂ output[target] / ∂ point, for each point and its own target. */
function gradientAt(
  space: GradientSpace,
  points: tf.Tensor,
  instances: tf.Tensor1D,
  targets: number[],
  classes: number,
): tf.Tensor {
  const selected = tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), classes), 'float32');
  // Each point's output depends on that point only (inference mode), so one gradient of the sum is every
  // point's own.
  return tf.grad((at: tf.Tensor) => tf.sum(tf.mul(space.forward(at, instances), selected)))(points);
}

function gradientSpace(model: tf.LayersModel, input: tf.Tensor): GradientSpace {
  const expectedDtype = model.inputs[0]!.dtype;
  if (input.dtype !== expectedDtype) throw new Error(`the model takes ${expectedDtype} input, not ${input.dtype}`);
  const activationValues = perInstanceActivationValues(model, input.shape.slice(1));
  if (input.dtype === 'float32') {
    return {
      point: input,
      baseline: tf.zerosLike(input),
      forward: (points) => model.apply(points, { training: false }) as tf.Tensor,
      toInputForm: (attributions) => attributions,
      activationValues,
    };
  }
  const embedding = embeddingFedBy(model, model.inputs[0]!);
  const ids = input;
  return {
    point: embedding.apply(ids) as tf.Tensor,
    baseline: embedding.apply(tf.zerosLike(ids)) as tf.Tensor,
    // Layers other than the Embedding may read the ids too (another branch): they get each point's instance's.
    forward: (points, instances) => replacingEmbedding(model, embedding, points, tf.gather(ids, instances)),
    toInputForm: (attributions) => tf.sum(attributions, -1),
    activationValues,
  };
}

/** The Embedding layer `input` feeds directly, which must not mask (masks are not replayed). */
function embeddingFedBy(model: tf.LayersModel, input: tf.SymbolicTensor): tf.layers.Layer {
  const embedding = model.layers.find(
    (layer) =>
      layer.getClassName() === 'Embedding' &&
      layer.inboundNodes.some((node) => node.inputTensors.length === 1 && node.inputTensors[0] === input),
  );
  if (!embedding) {
    throw new GradientsUnsupportedError(
      'gradients need a float input, or int32 token ids that feed an Embedding layer directly',
    );
  }
  if ((embedding.getConfig() as { maskZero?: unknown }).maskZero === true) {
    throw new GradientsUnsupportedError('gradients of a model whose Embedding masks padding are not supported');
  }
  return embedding;
}

/**
 * The model's output with `embedding`'s output replaced by `embedded`: its layers replayed eagerly, in their
 * (topological) order, from the model's input (`ids`) and the embedding output.
 */
function replacingEmbedding(
  model: tf.LayersModel,
  embedding: tf.layers.Layer,
  embedded: tf.Tensor,
  ids: tf.Tensor,
): tf.Tensor {
  const values = new Map<number, tf.Tensor>([[model.inputs[0]!.id, ids]]);
  for (const node of embedding.inboundNodes) {
    if (node.inputTensors[0] === model.inputs[0]) values.set(node.outputTensors[0]!.id, embedded);
  }
  for (const layer of model.layers) {
    if (layer === embedding) continue;
    for (const node of layer.inboundNodes) {
      const inputs = node.inputTensors.map((tensor) => values.get(tensor.id));
      // Nodes of other graphs a shared layer belongs to, and nodes already computed, are skipped.
      if (inputs.some((tensor) => tensor === undefined) || values.has(node.outputTensors[0]!.id)) continue;
      const outputs = layer.apply(inputs.length === 1 ? inputs[0]! : (inputs as tf.Tensor[]), {
        ...node.callArgs,
        training: false,
      }) as tf.Tensor | tf.Tensor[];
      (Array.isArray(outputs) ? outputs : [outputs]).forEach((output, i) =>
        values.set(node.outputTensors[i]!.id, output),
      );
    }
  }
  const output = values.get(model.outputs[0]!.id);
  if (!output) throw new GradientsUnsupportedError('the model output could not be computed from its Embedding');
  return output;
}

/**
 * Σ over layers of the values each outputs for one instance of `rowShape` (the input's actual shape, not the
 * model's declared one, whose unknown dims — a fully convolutional model's [null, null, null, 3] — say nothing
 * of the size): what one point of a pass holds. Each layer's output shape is computed from its inputs' concrete
 * shapes, in the layers' (topological) order.
 */
function perInstanceActivationValues(model: tf.LayersModel, rowShape: number[]): number {
  const rowSize = rowShape.reduce((size, dim) => size * dim, 1);
  const shapes = new Map<number, (number | null)[]>([[model.inputs[0]!.id, [1, ...rowShape]]]);
  let values = rowSize;
  for (const layer of model.layers) {
    for (const node of layer.inboundNodes) {
      const inputs = node.inputTensors.map((tensor) => shapes.get(tensor.id));
      // Nodes of other graphs a shared layer belongs to, and nodes already sized (the input), are skipped.
      if (inputs.some((shape) => shape === undefined) || shapes.has(node.outputTensors[0]!.id)) continue;
      const computed = layer.computeOutputShape(inputs.length === 1 ? inputs[0]! : (inputs as tf.Shape[]));
      const outputs = (Array.isArray(computed[0]) ? computed : [computed]) as (number | null)[][];
      outputs.forEach((shape, i) => {
        shapes.set(node.outputTensors[i]!.id, shape);
        // A dim a layer cannot say counts as the whole input: an overestimate only makes passes smaller.
        values += shape.slice(1).reduce<number>((size, dim) => size * (dim ?? rowSize), 1);
      });
    }
  }
  return values;
}
