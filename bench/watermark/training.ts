// A quiet, seeded mini-batch loop for the attacks that train (fine-tuning, distillation) and for the
// independently trained unmarked models, plus scoring.
import * as tf from '@tensorflow/tfjs';
import { predictClasses } from '../../demo/training.js';
import { shuffle, type Random } from '../../demo/random.js';

export interface FitOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  random: Random;
}

/**
 * Trains with Adam (fresh optimizer state) and cross-entropy on `targets`: class indices, or a
 * [examples, classes] tensor of soft labels (distillation).
 */
export async function fit(
  model: tf.LayersModel,
  x: tf.Tensor,
  targets: number[] | tf.Tensor,
  options: FitOptions,
): Promise<void> {
  const classes = model.outputs[0]!.shape.at(-1)!;
  const y = Array.isArray(targets) ? tf.oneHot(tf.tensor1d(targets, 'int32'), classes) : targets;
  model.compile({ optimizer: tf.train.adam(options.learningRate), loss: 'categoricalCrossentropy' });
  const examples = x.shape[0]!;
  try {
    for (let epoch = 0; epoch < options.epochs; epoch++) {
      const order = shuffle([...Array(examples).keys()], options.random);
      for (let start = 0; start < examples; start += options.batchSize) {
        const indices = tf.tensor1d(order.slice(start, start + options.batchSize), 'int32');
        const xBatch = tf.gather(x, indices);
        const yBatch = tf.gather(y, indices);
        await model.trainOnBatch(xBatch, yBatch);
        tf.dispose([indices, xBatch, yBatch]);
      }
    }
  } finally {
    if (Array.isArray(targets)) y.dispose();
  }
}

export { predictClasses };

/** Class probabilities for every example, in batches. */
export function predictProbabilities(model: tf.LayersModel, x: tf.Tensor, batchSize = 256): tf.Tensor {
  return model.predict(x, { batchSize }) as tf.Tensor;
}

export function accuracyOf(predicted: readonly number[], labels: readonly number[]): number {
  return predicted.filter((p, i) => p === labels[i]).length / labels.length;
}

export function agreementOf(a: readonly number[], b: readonly number[]): number {
  return a.filter((p, i) => p === b[i]).length / a.length;
}

/** What `layerName` receives (its input tensor) for the first `count` examples of `x`, row-major. */
export function layerInputs(model: tf.LayersModel, layerName: string, x: tf.Tensor, count: number): Float32Array {
  const truncated = tf.model({ inputs: model.inputs, outputs: model.getLayer(layerName).input as tf.SymbolicTensor });
  return tf.tidy(() => (truncated.predict(tf.slice(x, 0, count)) as tf.Tensor).dataSync() as Float32Array);
}
