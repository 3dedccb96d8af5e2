// The demo models' data, split exactly as demo/train.ts split it (same seed, same stratified 20% test
// split), so "held-out" means held out from the model being marked. bench/watermark.ts checks this by
// reproducing each card's held-out accuracy.
import * as tf from '@tensorflow/tfjs';
import { loadMnistDigits, loadSpamAssassin, MNIST_SIDE } from '../../demo/datasets.js';
import { seededRandom, stratifiedSplit } from '../../demo/random.js';
import { encodeText, type TextPreprocessing } from '../../src/preprocessing/text.js';

/** demo/mnist.ts and demo/spam.ts both hold out this fraction. */
const TEST_FRACTION = 0.2;

export interface Split {
  xTrain: tf.Tensor;
  yTrain: number[];
  xTest: tf.Tensor;
  yTest: number[];
}

export function disposeSplit(split: Split): void {
  tf.dispose([split.xTrain, split.xTest]);
}

export function mnistSplit(seed: number): Split {
  const { images, labels } = loadMnistDigits();
  const { train, test } = stratifiedSplit(labels, TEST_FRACTION, seededRandom(seed));
  const pixels = MNIST_SIDE * MNIST_SIDE;
  const inputs = (indices: number[]) => {
    const values = new Float32Array(indices.length * pixels);
    indices.forEach((index, i) => {
      for (let p = 0; p < pixels; p++) values[i * pixels + p] = images[index * pixels + p]! / 255;
    });
    return tf.tensor4d(values, [indices.length, MNIST_SIDE, MNIST_SIDE, 1]);
  };
  return {
    xTrain: inputs(train),
    yTrain: train.map((i) => labels[i]!),
    xTest: inputs(test),
    yTest: test.map((i) => labels[i]!),
  };
}

export function spamSplit(seed: number, preprocessing: TextPreprocessing): Split {
  const { texts, labels } = loadSpamAssassin();
  const { train, test } = stratifiedSplit(labels, TEST_FRACTION, seededRandom(seed));
  const inputs = (indices: number[]) => {
    const ids = new Int32Array(indices.length * preprocessing.maxLength);
    indices.forEach((index, i) => ids.set(encodeText(texts[index]!, preprocessing), i * preprocessing.maxLength));
    return tf.tensor2d(ids, [indices.length, preprocessing.maxLength], 'int32');
  };
  return {
    xTrain: inputs(train),
    yTrain: train.map((i) => labels[i]!),
    xTest: inputs(test),
    yTest: test.map((i) => labels[i]!),
  };
}
