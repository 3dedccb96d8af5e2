// The worker threads that decode images and tokenise large texts for predict, and do the CPU work of explain
// (see worker.ts).
import { Piscina } from 'piscina';
// sharp must be loaded by the main thread before worker threads load it (glibc Linux), so that its shared
// libraries stay loaded until every thread is done (sharp's documentation).
import 'sharp';
import { siblingWorkerFile, workerExecArgv } from '../server/worker-threads.js';
import { ImageDecodeError, type DecodedImages, type DecodeImageOptions } from './image.js';
import type { ImageRefusal, PreprocessingTask } from './worker.js';
import type { HeatmapTask } from '../explanations/heatmap.js';
import type { Coalitions } from '../explanations/kernel-shap.js';

/** The pool's queue is full: the caller should retry shortly (OVERLOADED). */
export class PreprocessingOverloadedError extends Error {}

export class PreprocessingPool {
  readonly #pool: Piscina;
  readonly #maxQueue: number;

  /** `maxQueue`: tasks (one per call's images, one per large text batch) waiting for a thread; beyond it calls are refused. */
  constructor(workers: number, maxQueue: number) {
    this.#maxQueue = maxQueue;
    const workerFile = siblingWorkerFile(import.meta.url, 'worker');
    this.#pool = new Piscina({
      filename: workerFile.href,
      // Threads start on first use (scripts that open the services never decode anything) and stay a while.
      minThreads: 0,
      maxThreads: workers,
      idleTimeout: 60_000,
      execArgv: workerExecArgv(workerFile),
    });
  }

  /** One call's images (image.ts `decodeImages`); throws ImageDecodeError, with the image's index, for one the client must fix. */
  async decodeImages(images: (string | Uint8Array)[], options: DecodeImageOptions): Promise<DecodedImages> {
    const result = (await this.#run({ kind: 'images', images, options })) as DecodedImages | ImageRefusal;
    if ('refused' in result) throw new ImageDecodeError(result.refused, result.index);
    return result;
  }

  /** The first `maxLength` tokens of each text (text.ts `leadingTokens`). */
  async leadingTokens(texts: string[], lowercase: boolean, maxLength: number): Promise<string[][]> {
    return (await this.#run({ kind: 'tokens', texts, lowercase, maxLength })) as string[][];
  }

  /** Kernel SHAP's coalitions (kernel-shap.ts `sampleCoalitions`). */
  async sampleCoalitions(features: number, samples: number, seed: number): Promise<Coalitions> {
    return (await this.#run({ kind: 'coalitions', features, samples, seed })) as Coalitions;
  }

  /** Kernel SHAP's constrained least squares (kernel-shap.ts `solveKernelShap`). */
  async solveKernelShap(
    coalitions: Coalitions,
    features: number,
    y: Float64Array,
    delta: number,
  ): Promise<Float64Array> {
    return (await this.#run({ kind: 'kernelShap', coalitions, features, y, delta })) as Float64Array;
  }

  /** An image explanation's heat map as a PNG data URL (heatmap.ts `renderHeatmap`). */
  async renderHeatmap(task: HeatmapTask): Promise<string> {
    return (await this.#run({ kind: 'heatmap', ...task })) as string;
  }

  async #run(task: PreprocessingTask): Promise<unknown> {
    if (this.#pool.queueSize >= this.#maxQueue) {
      throw new PreprocessingOverloadedError('the preprocessing queue is full');
    }
    return this.#pool.run(task);
  }

  close(): Promise<void> {
    return this.#pool.destroy();
  }
}
