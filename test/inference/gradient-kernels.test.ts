// The wasm backend's gradients against the 'cpu' backend's (tfjs-core's reference kernels), to 1e-4 of the
// largest magnitude: the kernels src/inference/gradient-kernels.ts registers, and the input gradients of every layer
// type attributions and training rely on (whose kernels, e.g. Conv2DBackpropInput, MaxPoolGrad, AvgPoolGrad,
// EluGrad, the wasm backend has).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/inference/backend.js';
import { WASM_GRADIENT_KERNELS } from '../../src/inference/gradient-kernels.js';

const RELATIVE_TOLERANCE = 1e-4;

/** Seeded values in [-1, 1), with a quarter of them exactly 0 (as ReLU outputs and image backgrounds are). */
function values(size: number, seed: number): Float32Array {
  let state = seed >>> 0 || 1;
  return Float32Array.from({ length: size }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const u = state / 2 ** 32;
    return u < 0.25 ? 0 : u * 2 - 1;
  });
}

/** `compute` on one backend, its result read back as plain numbers. */
async function on(backend: 'cpu' | 'wasm', compute: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const result = tf.tidy(compute);
  try {
    return (await result.data()) as Float32Array;
  } finally {
    result.dispose();
  }
}

async function assertSameOnBothBackends(compute: () => tf.Tensor): Promise<void> {
  const expected = await on('cpu', compute);
  const actual = await on('wasm', compute);
  assert.equal(actual.length, expected.length);
  const scale = expected.reduce((max, v) => Math.max(max, Math.abs(v)), 0);
  assert.ok(scale > 0, 'the reference gradient is not all zeros');
  for (let i = 0; i < expected.length; i += 1) {
    assert.ok(
      Math.abs(actual[i]! - expected[i]!) <= RELATIVE_TOLERANCE * scale,
      `value ${i}: wasm ${actual[i]} vs cpu ${expected[i]} (scale ${scale})`,
    );
  }
}

/** The gradient of Σ output · weights (a fixed random cotangent) with respect to the input. */
function inputGradient(model: tf.LayersModel, input: tf.Tensor): tf.Tensor {
  const outputShape = (model.outputs[0]!.shape as number[]).slice(1);
  const cotangentSize = outputShape.reduce((a, b) => a * b, 1) * input.shape[0]!;
  const cotangent = tf.tensor(values(cotangentSize, 7), [input.shape[0]!, ...outputShape]);
  return tf.grad((x: tf.Tensor) => tf.sum(tf.mul(model.apply(x, { training: false }) as tf.Tensor, cotangent)))(input);
}

const seeded = (seed: number) => ({
  kernelInitializer: tf.initializers.glorotUniform({ seed }),
  biasInitializer: tf.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: seed + 1 }),
});

before(async () => {
  await initBackend('wasm');
});

describe('wasm gradient kernels', () => {
  test('the kernels are registered for wasm', () => {
    for (const [kernelName, kernelFunc] of WASM_GRADIENT_KERNELS) {
      assert.equal(tf.getKernel(kernelName, 'wasm')?.kernelFunc, kernelFunc, `${kernelName} is registered for wasm`);
    }
  });

  test("MaxPoolGrad (replacing wasm's own) sends a tied maximum's gradient to its first pixel, as cpu and TensorFlow do", async () => {
    // Values from a few levels: windows tie all the time, as saturated image strokes do.
    const levels = (size: number, seed: number) => values(size, seed).map((v) => Math.round(v * 2) / 2);
    for (const [shape, filter, stride, pad] of [
      [[2, 7, 7, 3], 2, 1, 'valid'],
      [[2, 8, 9, 2], 3, 2, 'same'],
      [[1, 6, 6, 1], 2, 2, 'valid'],
    ] as const) {
      const size = shape.reduce<number>((a, b) => a * b, 1);
      await assertSameOnBothBackends(() =>
        tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(x as tf.Tensor4D, filter, stride, pad), 1.5)))(
          tf.tensor(levels(size, size), [...shape]),
        ),
      );
    }
  });

  test('UnsortedSegmentSum (the gradient of Gather / Embedding) matches cpu', async () => {
    const ids = Int32Array.from([3, 0, 3, 9, 1, 3, 12, 0]); // 12 is out of range: dropped, as TensorFlow does
    await assertSameOnBothBackends(() =>
      tf.unsortedSegmentSum(tf.tensor(values(8 * 5, 1), [8, 5]), tf.tensor1d(ids, 'int32'), 10),
    );
    // As an Embedding's weight gradient, through the op's own gradient.
    await assertSameOnBothBackends(() =>
      tf.grad((table: tf.Tensor) =>
        tf.sum(
          tf.mul(
            tf.gather(
              table,
              tf.tensor1d(
                ids.map((id) => id % 10),
                'int32',
              ),
            ),
            2,
          ),
        ),
      )(tf.tensor(values(10 * 4, 2), [10, 4])),
    );
  });

  for (const { name, xShape, filterShape, strides, pad } of [
    { name: 'valid, stride 1', xShape: [2, 9, 9, 3], filterShape: [3, 3, 3, 4], strides: 1, pad: 'valid' },
    { name: 'same, stride 2', xShape: [3, 8, 7, 2], filterShape: [3, 2, 2, 5], strides: 2, pad: 'same' },
  ] as const) {
    test(`Conv2DBackpropFilter (the gradient of a Conv2D kernel, ${name}) matches cpu`, async () => {
      const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
      await assertSameOnBothBackends(() =>
        tf.grad((filter: tf.Tensor) =>
          tf.sum(
            tf.square(
              tf.conv2d(tf.tensor4d(values(size(xShape), 3), [...xShape]), filter as tf.Tensor4D, strides, pad),
            ),
          ),
        )(tf.tensor4d(values(size(filterShape), 4), [...filterShape])),
      );
    });
  }

  const layerModels: { name: string; inputShape: number[]; layers: () => tf.layers.Layer[] }[] = [
    {
      name: 'Dense with ReLU, Dropout, Dense softmax (the MNIST MLP)',
      inputShape: [6, 6, 1],
      layers: () => [
        tf.layers.flatten({ inputShape: [6, 6, 1] }),
        tf.layers.dense({ units: 12, activation: 'relu', ...seeded(10) }),
        tf.layers.dropout({ rate: 0.2 }),
        tf.layers.dense({ units: 4, activation: 'softmax', ...seeded(11) }),
      ],
    },
    {
      name: 'Conv2D, MaxPooling2D, Conv2D (same, stride 2), Flatten, Dense (the MNIST CNN)',
      inputShape: [10, 10, 1],
      layers: () => [
        tf.layers.conv2d({ inputShape: [10, 10, 1], filters: 4, kernelSize: 3, activation: 'relu', ...seeded(20) }),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 5, kernelSize: 2, strides: 2, padding: 'same', activation: 'relu', ...seeded(21) }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 3, activation: 'softmax', ...seeded(22) }),
      ],
    },
    {
      name: 'AveragePooling2D, GlobalAveragePooling2D',
      inputShape: [8, 8, 2],
      layers: () => [
        tf.layers.conv2d({ inputShape: [8, 8, 2], filters: 3, kernelSize: 3, padding: 'same', ...seeded(30) }),
        tf.layers.averagePooling2d({ poolSize: 2 }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 3, activation: 'softmax', ...seeded(31) }),
      ],
    },
    {
      name: 'GlobalAveragePooling1D over a sequence of vectors (the spam model after its Embedding)',
      inputShape: [7, 5],
      layers: () => [
        tf.layers.globalAveragePooling1d({ inputShape: [7, 5] }),
        tf.layers.dense({ units: 6, activation: 'relu', ...seeded(40) }),
        tf.layers.dense({ units: 2, activation: 'softmax', ...seeded(41) }),
      ],
    },
    {
      name: 'activations: sigmoid, tanh, elu, selu, relu6, softplus, LeakyReLU',
      inputShape: [6],
      layers: () => [
        ...(['sigmoid', 'tanh', 'elu', 'selu', 'relu6', 'softplus'] as const).map((activation, i) =>
          tf.layers.dense({ units: 6, activation, ...(i === 0 ? { inputShape: [6] } : {}), ...seeded(50 + i) }),
        ),
        tf.layers.leakyReLU({ alpha: 0.1 }),
        tf.layers.dense({ units: 3, activation: 'softmax', ...seeded(60) }),
      ],
    },
  ];

  for (const { name, inputShape, layers } of layerModels) {
    test(`input gradients match cpu: ${name}`, async () => {
      const model = tf.sequential({ layers: layers() });
      try {
        const batch = 3;
        const size = inputShape.reduce((a, b) => a * b, batch);
        // Scaled so pre-activations reach every branch of the activations (ReLU6's 6, ELU's negative side).
        await assertSameOnBothBackends(() =>
          inputGradient(model, tf.mul(tf.tensor(values(size, 5), [batch, ...inputShape]), 3)),
        );
      } finally {
        model.dispose();
      }
    });
  }
});
