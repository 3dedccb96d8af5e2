// Optimisation transforms in a worker thread: pruning sorts every kernel and quantising rewrites every weight,
// tens of ms per million weights, which must not hold the server's event loop. Loaded by piscina (see
// optimizer.ts); no top-level await.
import { createHash } from 'node:crypto';
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

/** The derived artifact and the sha256 of its stored form (hashing hundreds of MB is CPU work too). */
export interface DerivedArtifact extends OptimizedArtifact {
  sha256: string;
}

/** What the transform refused, as data: error classes do not survive the thread boundary. */
export interface OptimizationRefusal {
  refused: string;
  field: string;
}

export default function run(task: OptimizationTask): DerivedArtifact | OptimizationRefusal {
  try {
    const optimized = optimizeArtifact(task.parent, task.options, task.maxParameters);
    const { weights } = optimized;
    // artifactHash's digest (models/artifact-service.ts, a module that would add seconds to this worker's
    // start): model.json as stored, then the weights. The tests check the two agree.
    const sha256 = createHash('sha256').update(JSON.stringify(optimized.modelJson)).update(weights).digest('hex');
    const derived: DerivedArtifact = { ...optimized, sha256 };
    // Moved, not copied: the weights can be hundreds of MB, and the copy would be made on the main thread.
    return move({
      [transferableSymbol]: [derived.weights.buffer],
      [valueSymbol]: derived,
    }) as unknown as DerivedArtifact;
  } catch (error) {
    if (error instanceof OptimizationError) return { refused: error.message, field: error.field };
    throw error;
  }
}
