// Gradient kernels that tfjs-backend-wasm 4.22 lacks, in plain JavaScript, the way the wasm backend itself
// implements kernels such as Unique: read the inputs from the wasm heap, compute, hand the result back with
// makeOutput. Training (demo/) and attributions (worker.ts) need them:
// - UnsortedSegmentSum, the gradient of Gather, i.e. of an Embedding layer's weights (the 'cpu' backend's own
//   makes one pass over the data per segment, which for a 10,000-token embedding takes seconds per batch);
// - Conv2DBackpropFilter, the gradient of a Conv2D kernel. tfjs's fused conv2d (what a Conv2D layer runs)
//   computes it even when only the gradient with respect to the input is asked for, so input attributions of a
//   convolutional model need it too.
// And one it has but computes differently: its MaxPoolGrad sends the gradient of a window whose maximum is tied
// to the last of the tied pixels, TensorFlow and the 'cpu' backend to the first. MNIST's saturated strokes
// tie all the time, so a convolutional model's input gradients differed between backends by half their scale;
// the kernel is replaced by one with TensorFlow's choice.
// The other gradients of Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, GlobalAveragePooling
// and the activations (Conv2DBackpropInput, MaxPoolGrad, AvgPoolGrad, EluGrad, Step, ...) the wasm backend has;
// test/inference/gradient-kernels.test.ts checks them all against the 'cpu' backend.
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

const BACKEND = 'wasm';

function unsortedSegmentSum({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const { x, segmentIds } = inputs as Record<keyof tf.UnsortedSegmentSumInputs, tf.TensorInfo>;
  const { numSegments } = attrs as unknown as tf.UnsortedSegmentSumAttrs;
  const values = wasm.readSync(x.dataId) as Float32Array | Int32Array;
  const ids = wasm.readSync(segmentIds.dataId) as Int32Array;
  const rowSize = values.length / ids.length;
  const sums = x.dtype === 'int32' ? new Int32Array(numSegments * rowSize) : new Float32Array(numSegments * rowSize);
  for (let i = 0; i < ids.length; i++) {
    const segment = ids[i]!;
    if (segment < 0 || segment >= numSegments) continue; // as TensorFlow: out-of-range ids are dropped
    for (let j = 0; j < rowSize; j++) sums[segment * rowSize + j]! += values[i * rowSize + j]!;
  }
  const shape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  return wasm.makeOutput(shape, x.dtype, undefined, sums);
}

function conv2DBackpropFilter({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const { x, dy } = inputs as Record<keyof tf.Conv2DBackpropFilterInputs, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (dataFormat !== 'NHWC') throw new Error(`Conv2DBackpropFilter on ${BACKEND}: only NHWC is supported`);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const xValues = wasm.readSync(x.dataId) as Float32Array;
  const dyValues = wasm.readSync(dy.dataId) as Float32Array;
  // dW[kh, kw, ci, co] = Σ over batch and output positions of x[b, input pixel, ci] · dy[b, output pixel, co].
  // Accumulated in float64, so batch size does not cost precision.
  const dW = new Float64Array(filterHeight * filterWidth * inChannels * outChannels);
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const dyAt = ((b * outHeight + oh) * outWidth + ow) * outChannels;
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight + kh - top;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth + kw - left;
            if (iw < 0 || iw >= inWidth) continue;
            const xAt = ((b * inHeight + ih) * inWidth + iw) * inChannels;
            const dWAt = (kh * filterWidth + kw) * inChannels * outChannels;
            for (let ci = 0; ci < inChannels; ci++) {
              const xValue = xValues[xAt + ci]!;
              if (xValue === 0) continue; // ReLU outputs and image backgrounds are mostly zero
              const row = dWAt + ci * outChannels;
              for (let co = 0; co < outChannels; co++) dW[row + co]! += xValue * dyValues[dyAt + co]!;
            }
          }
        }
      }
    }
  }
  return wasm.makeOutput(filterShape, 'float32', undefined, Float32Array.from(dW));
}

/** dx of a max pool: each output's gradient goes to the first (row-major) maximum of its window, as in TensorFlow. */
function maxPoolGrad({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const { dy, input } = inputs as Record<keyof tf.MaxPoolGradInputs, tf.TensorInfo>;
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as tf.MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, effectiveFilterHeight, effectiveFilterWidth } = info;
  const { top, left } = info.padInfo;
  const xValues = wasm.readSync(input.dataId) as Float32Array;
  const dyValues = wasm.readSync(dy.dataId) as Float32Array;
  const dx = new Float32Array(xValues.length);
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const hStart = Math.max(0, oh * strideHeight - top);
      const hEnd = Math.min(inHeight, oh * strideHeight - top + effectiveFilterHeight);
      for (let ow = 0; ow < outWidth; ow++) {
        const wStart = Math.max(0, ow * strideWidth - left);
        const wEnd = Math.min(inWidth, ow * strideWidth - left + effectiveFilterWidth);
        for (let c = 0; c < channels; c++) {
          let best = -1;
          let bestValue = -Infinity;
          for (let ih = hStart; ih < hEnd; ih++) {
            for (let iw = wStart; iw < wEnd; iw++) {
              const at = ((b * inHeight + ih) * inWidth + iw) * channels + c;
              if (xValues[at]! > bestValue || best < 0) {
                best = at;
                bestValue = xValues[at]!;
              }
            }
          }
          if (best >= 0) dx[best]! += dyValues[((b * outHeight + oh) * outWidth + ow) * channels + c]!;
        }
      }
    }
  }
  return wasm.makeOutput(input.shape, 'float32', undefined, dx);
}

/** The kernels this module registers for wasm, by name (tests compare each with the 'cpu' backend's). */
export const WASM_GRADIENT_KERNELS: ReadonlyMap<string, tf.KernelFunc> = new Map([
  [tf.UnsortedSegmentSum, unsortedSegmentSum],
  [tf.Conv2DBackpropFilter, conv2DBackpropFilter],
  [tf.MaxPoolGrad, maxPoolGrad],
]);

/**
 * Registers the kernels above for the wasm backend, replacing its own MaxPoolGrad (once per thread; before the
 * backend is initialised, so the replaced kernel's setup never runs).
 */
export function registerWasmGradientKernels(): void {
  for (const [kernelName, kernelFunc] of WASM_GRADIENT_KERNELS) {
    const registered = tf.getKernel(kernelName, BACKEND);
    if (registered?.kernelFunc === kernelFunc) continue;
    if (registered) tf.unregisterKernel(kernelName, BACKEND);
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
}
