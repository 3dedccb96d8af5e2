// Runs the optimisation transforms (optimization.ts) in a worker thread, within the serving parameter
// budget, and turns what they refuse into BAD_USER_INPUT naming the input.
import type { Piscina } from 'piscina';
import { BadUserInputError, ServiceUnavailableError } from '../server/errors.js';
import { occasionalWorker } from '../server/worker-threads.js';
import type { WeightsArtifact } from '../watermark/artifact.js';
import { assertOptimizationOptions, OptimizationError, type OptimizationOptions } from './optimization.js';
import type { DerivedArtifact, OptimizationRefusal, OptimizationTask } from './optimization-worker.js';

export type { DerivedArtifact } from './optimization-worker.js';

/**
 * Optimisations admitted at once, running or waiting: each holds its parent's weights (up to hundreds of
 * MB) until its turn, so more are answered SERVICE_UNAVAILABLE rather than queued without bound.
 */
export const MAX_PENDING_OPTIMIZATIONS = 4;
const BUSY_RETRY_AFTER_SECONDS = 30;

const isRefusal = (value: unknown): value is OptimizationRefusal =>
  typeof value === 'object' && value !== null && 'refused' in value;

function refused(message: string, field: string): BadUserInputError {
  return new BadUserInputError(`Cannot optimise this version: ${message}`, `input.${field}`);
}

/** The options as a caller gave them (GraphQL input), checked: BAD_USER_INPUT naming the field otherwise. */
export function parseOptimizationOptions(input: { quantize?: unknown; pruneSparsity?: unknown }): OptimizationOptions {
  try {
    return assertOptimizationOptions({ quantize: input.quantize ?? null, pruneSparsity: input.pruneSparsity ?? null });
  } catch (error) {
    if (error instanceof OptimizationError) throw refused(error.message, error.field);
    throw error;
  }
}

export class ArtifactOptimizer {
  // One optimisation at a time is plenty (publish-time work); started on first use.
  readonly #pool: Piscina;
  #pending = 0;

  /** `maxParameters`: the engine's budget (MODEL_MAX_PARAMETERS); larger artifacts are refused before any weight is read. */
  constructor(private readonly maxParameters: number) {
    this.#pool = occasionalWorker(import.meta.url, 'optimization-worker');
  }

  /** The pruned and/or quantised artifact (see optimizeArtifact) with its sha256; BAD_USER_INPUT for what it refuses. */
  async optimize(
    parent: WeightsArtifact,
    input: { quantize?: unknown; pruneSparsity?: unknown },
  ): Promise<DerivedArtifact> {
    const options = parseOptimizationOptions(input);
    if (this.#pending >= MAX_PENDING_OPTIMIZATIONS) {
      throw new ServiceUnavailableError(
        `${MAX_PENDING_OPTIMIZATIONS} optimisations are already under way; retry shortly`,
        BUSY_RETRY_AFTER_SECONDS,
      );
    }
    this.#pending++;
    try {
      const task: OptimizationTask = { parent, options, maxParameters: this.maxParameters };
      const result = (await this.#pool.run(task)) as DerivedArtifact | OptimizationRefusal;
      if (isRefusal(result)) throw refused(result.refused, result.field);
      return result;
    } finally {
      this.#pending--;
    }
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
