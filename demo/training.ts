// A seeded mini-batch training loop with a progress bar per epoch, and batched prediction.
import * as tf from '@tensorflow/tfjs';
import cliProgress from 'cli-progress';
import { argmaxRows } from '../src/evaluation/metrics.js';
import { shuffle, type Random } from './random.js';

export interface FitOptions {
  /** Shown on the progress bar. */
  name: string;
  epochs: number;
  batchSize: number;
  /** Orders the examples of each epoch (model.fit would shuffle with the unseeded tf util). */
  random: Random;
}

/** Trains on `x` and integer class labels, printing the mean training loss and accuracy of each epoch. */
export async function fitClassifier(
  model: tf.LayersModel,
  x: tf.Tensor,
  labels: readonly number[],
  options: FitOptions,
): Promise<void> {
  const { name, epochs, batchSize, random } = options;
  const classes = model.outputs[0]!.shape.at(-1)!;
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d([...labels], 'int32'), classes));
  const batches = Math.ceil(labels.length / batchSize);
  const bar = new cliProgress.SingleBar(
    {
      format: `${name} epoch {epoch}/${epochs} |{bar}| {value}/{total} batches | loss {loss} acc {accuracy} | {duration}s`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const started = performance.now();
      const order = shuffle([...labels.keys()], random);
      let lossSum = 0;
      let accuracySum = 0;
      bar.start(batches, 0, { epoch, loss: '-', accuracy: '-' });
      for (let b = 0; b < batches; b++) {
        const indices = tf.tensor1d(order.slice(b * batchSize, (b + 1) * batchSize), 'int32');
        const xBatch = tf.gather(x, indices);
        const yBatch = tf.gather(y, indices);
        const [loss, accuracy] = (await model.trainOnBatch(xBatch, yBatch)) as number[];
        tf.dispose([indices, xBatch, yBatch]);
        lossSum += loss!;
        accuracySum += accuracy!;
        bar.update(b + 1, { loss: (lossSum / (b + 1)).toFixed(4), accuracy: (accuracySum / (b + 1)).toFixed(4) });
      }
      bar.stop();
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `  ${name} epoch ${epoch}/${epochs}: loss ${(lossSum / batches).toFixed(4)}, ` +
          `train accuracy ${(accuracySum / batches).toFixed(4)} (${seconds.toFixed(1)} s)`,
      );
    }
  } finally {
    bar.stop();
    y.dispose();
  }
}

/** The predicted class of every example, in batches (an embedding of a whole split would not fit). */
export async function predictClasses(model: tf.LayersModel, x: tf.Tensor, batchSize = 256): Promise<number[]> {
  const probabilities = model.predict(x, { batchSize }) as tf.Tensor;
  try {
    return argmaxRows(await probabilities.data(), probabilities.shape.at(-1)!);
  } finally {
    probabilities.dispose();
  }
}
