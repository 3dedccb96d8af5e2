// The training backend: tfjs's WebAssembly backend (tfjs-node cannot be installed offline, and the
// plain-JS 'cpu' backend is several times slower).
//
// tfjs-backend-wasm 4.22 has no kernels for two gradients the demo models need:
// - UnsortedSegmentSum, the gradient of Gather, i.e. of an Embedding layer;
// - Conv2DBackpropFilter, the gradient of a Conv2D layer's kernel.
// Both are registered here in plain JavaScript, the way the wasm backend itself implements kernels such as
// Unique: read the inputs from the wasm heap, compute, hand the result back with makeOutput. (The 'cpu'
// backend has both, but its UnsortedSegmentSum makes one pass over the data per segment, which for a
// 10,000-token embedding takes seconds per batch.)
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths, type BackendWasm } from '@tensorflow/tfjs-backend-wasm';

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

/** Loads the wasm backend with the two gradient kernels above and makes it the active backend. */
export async function initTrainingBackend(): Promise<string> {
  const require = createRequire(import.meta.url);
  // In Node the .wasm binaries are read from disk, next to the package's entry point in dist/.
  setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  for (const [kernelName, kernelFunc] of [
    [tf.UnsortedSegmentSum, unsortedSegmentSum],
    [tf.Conv2DBackpropFilter, conv2DBackpropFilter],
  ] as const) {
    if (!tf.getKernel(kernelName, BACKEND)) tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
  if (!(await tf.setBackend(BACKEND))) throw new Error('the tfjs wasm backend could not be initialised');
  await tf.ready();
  return tf.getBackend();
}
