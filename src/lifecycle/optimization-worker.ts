// Optimisation transforms in a worker thread: pruning sorts every kernel and quantising rewrites every weight,
// tens of ms per million weights, which must not hold the server's event loop. Loaded by piscina (see
// optimizer.ts); no top-level await.
import { move, transferableSymbol, valueSymbol } from 'piscina';
import type { WeightsArtifact } from '../watermark/artifact.js';
import {
  OptimizationError,
  optimizeArtifact,
  type OptimizationOptions,
  type OptimizedArtifact,
} from './optimization.js';

export interface OptimizationTask {
  parent: WeightsArtifact;
  options: OptimizationOptions;
  maxParameters: number;
}

/** What the transform refused, as data: error classes do not survive the thread boundary. */
export interface OptimizationRefusal {
  refused: string;
  field: string;
}

export default function run(task: OptimizationTask): OptimizedArtifact | OptimizationRefusal {
  try {
    const derived = optimizeArtifact(task.parent, task.options, task.maxParameters);
    // Moved, not copied: the weights can be hundreds of MB, and the copy would be made on the main thread.
    return move({
      [transferableSymbol]: [derived.weights.buffer],
      [valueSymbol]: derived,
    }) as unknown as OptimizedArtifact;
  } catch (error) {
    if (error instanceof OptimizationError) return { refused: error.message, field: error.field };
    throw error;
  }
}
