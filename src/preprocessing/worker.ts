// Image decoding and resizing, and tokenising of large texts, in worker threads; also the CPU work of
// explanations (Kernel SHAP's coalitions and solve, heat-map PNGs). sharp decodes on libuv's
// threadpool, off any event loop, but turning the decoded image into the model's floats (colour, alpha,
// scaling) is a loop over every source pixel, and base64 decoding is synchronous too: 10–50 ms for a
// 12-megapixel photo measured here, which must not hold the server's event loop. Loaded by piscina (see
// preprocessing-pool.ts); no top-level await.
import sharp from 'sharp';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { decodeImages, ImageDecodeError, type DecodeImageOptions } from './image.js';
import { leadingTokens } from './text.js';
import { renderHeatmap, type HeatmapTask } from '../explanations/heatmap.js';
import { sampleCoalitions, solveKernelShap, type Coalitions } from '../explanations/kernel-shap.js';

// Every image is decoded once: libvips's operation cache would only hold memory.
sharp.cache(false);

export type PreprocessingTask =
  | { kind: 'images'; images: (string | Uint8Array)[]; options: DecodeImageOptions }
  | { kind: 'tokens'; texts: string[]; lowercase: boolean; maxLength: number }
  | { kind: 'coalitions'; features: number; samples: number; seed: number }
  | { kind: 'kernelShap'; coalitions: Coalitions; features: number; y: Float64Array; delta: number }
  | ({ kind: 'heatmap' } & HeatmapTask);

/** An image the client must fix; error classes do not survive the thread boundary. */
export interface ImageRefusal {
  refused: string;
  index: number;
}

export default async function run(task: PreprocessingTask) {
  if (task.kind === 'tokens') return task.texts.map((text) => leadingTokens(text, task.lowercase, task.maxLength));
  if (task.kind === 'coalitions') {
    const coalitions = sampleCoalitions(task.features, task.samples, task.seed);
    return move({ [transferableSymbol]: [coalitions.masks.buffer], [valueSymbol]: coalitions });
  }
  if (task.kind === 'kernelShap') return solveKernelShap(task.coalitions, task.features, task.y, task.delta);
  if (task.kind === 'heatmap') return renderHeatmap(task);
  try {
    const decoded = await decodeImages(task.images, task.options);
    // The pixels move to the caller's thread rather than being copied.
    return move({ [transferableSymbol]: [decoded.pixels.buffer], [valueSymbol]: decoded });
  } catch (error) {
    if (error instanceof ImageDecodeError)
      return { refused: error.message, index: error.index ?? 0 } satisfies ImageRefusal;
    throw error;
  }
}
