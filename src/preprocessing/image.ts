// Turns a PNG into the float input of an image model: a row-major [height, width, channels] Float32Array
// (one example, no batch dimension), the layout of a tfjs image tensor.
//
// - Colour: pngjs expands every PNG (grey, palette, RGB, with or without alpha, 1–16 bits) to 8-bit RGBA.
//   channels 1: grey = r when r = g = b, else ITU-R BT.601 luma 0.299 r + 0.587 g + 0.114 b;
//   channels 3: r, g, b; channels 4: r, g, b, a untouched.
//   For 1 and 3 channels transparency is composited over black (value × alpha / 255): models such as
//   MNIST read black as background.
// - Size: an image of another size is stretched to height × width (aspect ratio not kept), by
//   'bilinear' (default; half-pixel centres, as TensorFlow's resize with half_pixel_centers, no
//   antialiasing) or 'nearest' (the source pixel whose area contains the target pixel's centre).
// - Scaling: 'unit' divides by 255 into [0, 1]; 'none' keeps 0..255.
import { PNG } from 'pngjs';

export type ImageChannels = 1 | 3 | 4;
export type PixelScaling = 'unit' | 'none';
export type ResizeMethod = 'bilinear' | 'nearest';

/** The signature's preprocessing entry for image models. */
export interface ImagePreprocessing {
  kind: 'image';
  height: number;
  width: number;
  channels: ImageChannels;
  scaling: PixelScaling;
}

export interface DecodeImageOptions {
  height: number;
  width: number;
  channels: ImageChannels;
  scaling: PixelScaling;
  resize?: ResizeMethod;
  /** Larger source images are rejected before decoding (decompressed RGBA takes 4 bytes a pixel). */
  maxSourcePixels?: number;
}

export const DEFAULT_MAX_SOURCE_PIXELS = 4096 * 4096;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const DATA_URL_PREFIX = /^data:image\/png;base64,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
// Signature and IHDR up to the height: 24 bytes, the first 32 base64 characters.
const PNG_HEADER_BYTES = 24;
const PNG_HEADER_BASE64 = 32;
const DATA_URL_MAX = 'data:image/png;base64,'.length;

export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
}

/** A PNG's size from its header. The IHDR chunk always comes first: width and height are big-endian at bytes 16 and 20. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < PNG_HEADER_BYTES || !buffer.subarray(0, 8).equals(PNG_SIGNATURE))
    throw new ImageDecodeError('image is not a PNG');
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
}

/**
 * The size of a base64 PNG (as `decodeImage` takes it) from its first characters only, so that an image can
 * be refused for its size without decoding, or even base64-decoding, the rest.
 */
export function base64PngSize(base64: string): { width: number; height: number } {
  const start = DATA_URL_PREFIX.exec(base64.slice(0, DATA_URL_MAX))?.[0].length ?? 0;
  let header = '';
  // Whitespace is allowed anywhere (decodeImage strips it); look no further than a few lines.
  for (let i = start; i < base64.length && i < start + 1024 && header.length < PNG_HEADER_BASE64; i++) {
    if (!/\s/.test(base64[i]!)) header += base64[i];
  }
  if (header.length < PNG_HEADER_BASE64 || !BASE64.test(header)) throw new ImageDecodeError('image is not a PNG');
  return pngSize(Buffer.from(header, 'base64'));
}

function assertPixels({ width, height }: { width: number; height: number }, maxPixels: number): void {
  if (width * height > maxPixels) {
    throw new ImageDecodeError(`image is ${width}×${height}; at most ${maxPixels} pixels are accepted`);
  }
}

/** Decodes a base64 PNG (plain, or a `data:image/png;base64,` URL), as sent in a predict request. */
export function decodeImage(base64: string, options: DecodeImageOptions): Float32Array {
  const payload = base64.replace(DATA_URL_PREFIX, '').replace(/\s+/g, '');
  // Buffer.from silently skips characters outside the alphabet, so validate first.
  if (!BASE64.test(payload) || payload.length % 4 === 1) throw new ImageDecodeError('image is not valid base64');
  return decodePng(Buffer.from(payload, 'base64'), options);
}

/** Decodes PNG bytes. */
export function decodePng(bytes: Uint8Array, options: DecodeImageOptions): Float32Array {
  const {
    height,
    width,
    channels,
    scaling,
    resize = 'bilinear',
    maxSourcePixels = DEFAULT_MAX_SOURCE_PIXELS,
  } = options;
  for (const [name, value] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  }
  if (![1, 3, 4].includes(channels)) throw new RangeError('channels must be 1, 3 or 4');

  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assertPixels(pngSize(buffer), maxSourcePixels);

  let png: PNG;
  try {
    png = PNG.sync.read(buffer);
  } catch (error) {
    throw new ImageDecodeError(`PNG could not be decoded: ${(error as Error).message}`);
  }
  const pixels = toChannels(png.data, png.width * png.height, channels);
  const sized =
    png.width === width && png.height === height
      ? pixels
      : (resize === 'nearest' ? resizeNearest : resizeBilinear)(pixels, png.height, png.width, channels, height, width);
  if (scaling === 'unit') for (let i = 0; i < sized.length; i++) sized[i]! /= 255;
  return sized;
}

function toChannels(rgba: Uint8Array, pixelCount: number, channels: ImageChannels): Float32Array {
  if (channels === 4) return Float32Array.from(rgba.subarray(0, pixelCount * 4));
  const out = new Float32Array(pixelCount * channels);
  for (let p = 0; p < pixelCount; p++) {
    const r = rgba[4 * p]!;
    const g = rgba[4 * p + 1]!;
    const b = rgba[4 * p + 2]!;
    // a = 255 leaves values exact: v × 255 / 255 = v in floating point.
    const opacity = rgba[4 * p + 3]! / 255;
    if (channels === 3) {
      out[3 * p] = r * opacity;
      out[3 * p + 1] = g * opacity;
      out[3 * p + 2] = b * opacity;
    } else {
      out[p] = (r === g && g === b ? r : 0.299 * r + 0.587 * g + 0.114 * b) * opacity;
    }
  }
  return out;
}

function resizeNearest(
  source: Float32Array,
  sourceHeight: number,
  sourceWidth: number,
  channels: number,
  height: number,
  width: number,
): Float32Array {
  const out = new Float32Array(height * width * channels);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(sourceHeight - 1, Math.floor(((y + 0.5) * sourceHeight) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(sourceWidth - 1, Math.floor(((x + 0.5) * sourceWidth) / width));
      const from = (sy * sourceWidth + sx) * channels;
      out.set(source.subarray(from, from + channels), (y * width + x) * channels);
    }
  }
  return out;
}

/** Source coordinate of a target pixel centre, clamped to the image, split into two neighbours and a weight. */
function bilinearTaps(target: number, sourceSize: number, targetSize: number): [number, number, number] {
  const position = Math.min(sourceSize - 1, Math.max(0, ((target + 0.5) * sourceSize) / targetSize - 0.5));
  const low = Math.floor(position);
  return [low, Math.min(low + 1, sourceSize - 1), position - low];
}

function resizeBilinear(
  source: Float32Array,
  sourceHeight: number,
  sourceWidth: number,
  channels: number,
  height: number,
  width: number,
): Float32Array {
  const out = new Float32Array(height * width * channels);
  const columns = Array.from({ length: width }, (_, x) => bilinearTaps(x, sourceWidth, width));
  for (let y = 0; y < height; y++) {
    const [y0, y1, wy] = bilinearTaps(y, sourceHeight, height);
    for (let x = 0; x < width; x++) {
      const [x0, x1, wx] = columns[x]!;
      const topLeft = (y0 * sourceWidth + x0) * channels;
      const topRight = (y0 * sourceWidth + x1) * channels;
      const bottomLeft = (y1 * sourceWidth + x0) * channels;
      const bottomRight = (y1 * sourceWidth + x1) * channels;
      for (let c = 0; c < channels; c++) {
        const top = source[topLeft + c]! + (source[topRight + c]! - source[topLeft + c]!) * wx;
        const bottom = source[bottomLeft + c]! + (source[bottomRight + c]! - source[bottomLeft + c]!) * wx;
        out[(y * width + x) * channels + c] = top + (bottom - top) * wy;
      }
    }
  }
  return out;
}
