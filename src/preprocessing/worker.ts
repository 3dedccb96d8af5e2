// PNG decoding and resizing, and tokenising of large texts, in worker threads: a 4-megapixel PNG takes
// ~100 ms to decode, which must not hold the server's event loop. Loaded by piscina (see
// preprocessing-pool.ts); no top-level await.
import { move } from 'piscina';
import { decodeImage, ImageDecodeError, type DecodeImageOptions } from './image.js';
import { leadingTokens } from './text.js';

export type PreprocessingTask =
  | { kind: 'image'; base64: string; options: DecodeImageOptions }
  | { kind: 'tokens'; texts: string[]; lowercase: boolean; maxLength: number };

/** An image the client must fix; error classes do not survive the thread boundary. */
export interface ImageRefusal {
  refused: string;
}

export default function run(task: PreprocessingTask) {
  if (task.kind === 'tokens') return task.texts.map((text) => leadingTokens(text, task.lowercase, task.maxLength));
  try {
    const pixels = decodeImage(task.base64, task.options);
    return move(pixels);
  } catch (error) {
    if (error instanceof ImageDecodeError) return { refused: error.message } satisfies ImageRefusal;
    throw error;
  }
}
