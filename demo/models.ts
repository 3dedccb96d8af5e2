// The demo architectures. All take one input and output class probabilities (softmax), the shape the
// marketplace serves: [batch, ...input] → [batch, classes].
import * as tf from '@tensorflow/tfjs';

const LEARNING_RATE = 1e-3;
export const OPTIMIZER = `Adam (learning rate ${LEARNING_RATE}), categorical cross-entropy`;

function compiled(model: tf.Sequential): tf.Sequential {
  model.compile({ optimizer: tf.train.adam(LEARNING_RATE), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

/**
 * Flatten → Dense 128 ReLU → Dropout 0.2 → Dense softmax. The input is the [height, width, 1] image rather
 * than a flat vector so the MLP and the CNN share one image signature.
 */
export function buildMlp(inputShape: [number, number, number], classes: number): tf.Sequential {
  return compiled(
    tf.sequential({
      name: 'mnist_mlp',
      layers: [
        tf.layers.flatten({ inputShape }),
        tf.layers.dense({ units: 128, activation: 'relu' }),
        tf.layers.dropout({ rate: 0.2 }),
        tf.layers.dense({ units: classes, activation: 'softmax' }),
      ],
    }),
  );
}

/** Conv 16 3×3 → MaxPool 2 → Conv 32 3×3 → MaxPool 2 → Flatten → Dense softmax (12,810 parameters). */
export function buildCnn(inputShape: [number, number, number], classes: number): tf.Sequential {
  return compiled(
    tf.sequential({
      name: 'mnist_cnn',
      layers: [
        tf.layers.conv2d({ inputShape, filters: 16, kernelSize: 3, activation: 'relu' }),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu' }),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.flatten(),
        tf.layers.dense({ units: classes, activation: 'softmax' }),
      ],
    }),
  );
}

/**
 * Embedding(vocabulary, 128) → GlobalAveragePooling1D → Dense 128 ReLU → Dropout 0.2 → Dense softmax, over
 * int32 token ids of fixed length. Padding is averaged in like any token (tfjs's GlobalAveragePooling1D
 * takes no mask), so the model also sees how short a text is.
 */
export function buildTextClassifier(vocabularySize: number, maxLength: number, classes: number): tf.Sequential {
  return compiled(
    tf.sequential({
      name: 'text_classifier',
      layers: [
        // The int32 dtype belongs on the input: a layer's own dtype would make the embedding weights int32.
        tf.layers.inputLayer({ inputShape: [maxLength], dtype: 'int32' }),
        tf.layers.embedding({ inputDim: vocabularySize, outputDim: 128, inputLength: maxLength }),
        tf.layers.globalAveragePooling1d(),
        tf.layers.dense({ units: 128, activation: 'relu' }),
        tf.layers.dropout({ rate: 0.2 }),
        tf.layers.dense({ units: classes, activation: 'softmax' }),
      ],
    }),
  );
}
