// The worker threads that decode images and tokenise large texts for predict (see worker.ts).
import { Piscina } from 'piscina';
import { siblingWorkerFile, workerExecArgv } from '../server/worker-threads.js';
import { ImageDecodeError, type DecodeImageOptions } from './image.js';
import type { ImageRefusal, PreprocessingTask } from './worker.js';

export class PreprocessingPool {
  readonly #pool: Piscina;

  constructor(workers: number) {
    const workerFile = siblingWorkerFile(import.meta.url, 'worker');
    this.#pool = new Piscina({
      filename: workerFile.href,
      // One thread stays warm so the first image of a quiet period does not wait for a thread to start.
      minThreads: 1,
      maxThreads: workers,
      idleTimeout: 60_000,
      execArgv: workerExecArgv(workerFile),
    });
  }

  /** Throws ImageDecodeError for an image the client must fix. */
  async decodeImage(base64: string, options: DecodeImageOptions): Promise<Float32Array> {
    const result = (await this.#pool.run({ kind: 'image', base64, options } satisfies PreprocessingTask)) as
      Float32Array | ImageRefusal;
    if ('refused' in result) throw new ImageDecodeError(result.refused);
    return result;
  }

  /** The first `maxLength` tokens of each text (text.ts `leadingTokens`). */
  async leadingTokens(texts: string[], lowercase: boolean, maxLength: number): Promise<string[][]> {
    return (await this.#pool.run({
      kind: 'tokens',
      texts,
      lowercase,
      maxLength,
    } satisfies PreprocessingTask)) as string[][];
  }

  close(): Promise<void> {
    return this.#pool.destroy();
  }
}
