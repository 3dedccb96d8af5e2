// Turns the images people have (JPEG, PNG, WebP: base64, a data: URL, or raw bytes) into the float input of an
// image model: a row-major [height, width, channels] Float32Array (one example, no batch dimension), the
// layout of a tfjs image tensor.
//
// - Format: told by the file's magic bytes (a data: URL's declared type is not trusted); anything else is
//   refused. Decoded by sharp (libvips: libjpeg-turbo/mozjpeg, libpng, libwebp), to 8-bit sRGB with alpha,
//   turned upright by its EXIF orientation; an animated WebP gives its first frame.
// - Size first: the pixel limits are checked on the width and height in the file's header (sharp's
//   metadata reads only the header) before any pixel is decoded, and again by sharp's `limitInputPixels`.
// - Colour: channels 1: grey = r when r = g = b, else ITU-R BT.601 luma 0.299 r + 0.587 g + 0.114 b;
//   channels 3: r, g, b; channels 4: r, g, b, a untouched.
//   For 1 and 3 channels transparency is composited over black (value × alpha / 255): models such as
//   MNIST read black as background.
// - Size policy (the signature's `resize`): 'stretch' (also when none is declared) resizes any other size to
//   height × width, aspect ratio not kept; 'refuse' accepts only exactly height × width. `minSourceSize`
//   refuses smaller sources (a 1×1 image stretched to 224×224 is no photo).
// - Resizing is ours, not sharp's: 'bilinear' (default) is TensorFlow's resize_bilinear with
//   half_pixel_centers and no antialiasing (what tf.image.resize and tfjs's resizeBilinear(…, true) compute,
//   what most TF image models were trained on), 'nearest' takes the source pixel whose area holds the target
//   pixel's centre. libvips's kernels antialias when shrinking and its JPEG shrink-on-load changes results with
//   the scale; doing it here keeps results exact, deterministic and the same for every format.
// - Scaling: 'unit' divides by 255 into [0, 1]; 'none' keeps 0..255.
import sharp from 'sharp';

export type ImageChannels = 1 | 3 | 4;
export type PixelScaling = 'unit' | 'none';
export type ResizeMethod = 'bilinear' | 'nearest';
/** What to do with a source image of another size than the model's. */
export type ResizePolicy = 'stretch' | 'refuse';
export type ImageFormat = 'jpeg' | 'png' | 'webp';

export interface ImageSize {
  width: number;
  height: number;
}

/** The signature's preprocessing entry for image models. */
export interface ImagePreprocessing {
  kind: 'image';
  height: number;
  width: number;
  channels: ImageChannels;
  scaling: PixelScaling;
  /** Absent in signatures that declare no policy: stretched, and the caller is warned. */
  resize?: ResizePolicy | undefined;
  minSourceSize?: ImageSize | undefined;
}

export interface DecodeImageOptions {
  height: number;
  width: number;
  channels: ImageChannels;
  scaling: PixelScaling;
  interpolation?: ResizeMethod;
  resize?: ResizePolicy | undefined;
  minSourceSize?: ImageSize | undefined;
  /** Larger source images are refused before decoding (decoded RGBA takes 4 bytes a pixel, 16 as floats). */
  maxSourcePixels?: number;
  /** The pixels all images of one call may hold, checked on their headers before any is decoded. */
  maxPixelsPerCall?: number;
  /** Pixels the call's earlier images (another input of a named signature) already took of maxPixelsPerCall. */
  pixelsBefore?: number;
}

/** One call's images, decoded: `pixels` holds each image's values, one after the other. */
export interface DecodedImages {
  pixels: Float32Array;
  /** Each image's size before resizing (upright). */
  sources: ImageSize[];
}

export const DEFAULT_MAX_SOURCE_PIXELS = 4096 * 4096;

const DATA_URL = /^data:([^;,]*)(;base64)?,/i;
const DATA_URL_TYPES = new Set(['image/jpeg', 'image/jpg', 'image/png', 'image/webp']);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** An image the client must fix; `index` is its place in the call when it came from a list. */
export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';

  constructor(
    message: string,
    readonly index?: number,
  ) {
    super(message);
  }
}

/** The format told by the first bytes: JPEG's SOI marker, PNG's signature, WebP's RIFF…WEBP header. */
export function imageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  const ascii = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  return null;
}

/** The bytes of a base64 image (plain, or a `data:image/jpeg|png|webp;base64,` URL), as sent in a predict request. */
function base64Bytes(text: string): Buffer {
  const dataUrl = DATA_URL.exec(text.slice(0, 64));
  if (dataUrl && (!DATA_URL_TYPES.has(dataUrl[1]!.toLowerCase()) || !dataUrl[2])) {
    throw new ImageDecodeError('data URLs must be base64 image/jpeg, image/png or image/webp');
  }
  const payload = (dataUrl ? text.slice(dataUrl[0].length) : text).replace(/\s+/g, '');
  // Buffer.from silently skips characters outside the alphabet, so validate first.
  if (!BASE64.test(payload) || payload.length % 4 === 1) throw new ImageDecodeError('image is not valid base64');
  return Buffer.from(payload, 'base64');
}

function toBytes(image: string | Uint8Array): Buffer {
  if (typeof image === 'string') return base64Bytes(image);
  return Buffer.from(image.buffer, image.byteOffset, image.byteLength);
}

function checkFormat(bytes: Uint8Array): void {
  if (imageFormat(bytes) === null) throw new ImageDecodeError('not a JPEG, PNG or WebP image');
}

/** The upright size from the header only; refuses what is not a JPEG, PNG or WebP. */
export async function imageSize(bytes: Uint8Array): Promise<ImageSize> {
  checkFormat(bytes);
  try {
    // No pixel limit here: the size is what the caller checks against its own limits.
    const { autoOrient } = await sharp(bytes, { limitInputPixels: false }).metadata();
    return { width: autoOrient.width, height: autoOrient.height };
  } catch (error) {
    throw new ImageDecodeError(`the image header could not be read: ${(error as Error).message}`);
  }
}

function checkOptions({ height, width, channels }: DecodeImageOptions): void {
  for (const [name, value] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  }
  if (![1, 3, 4].includes(channels)) throw new RangeError('channels must be 1, 3 or 4');
}

/** Why an image of `size` is refused before decoding, or null. */
function sizeProblem(size: ImageSize, options: DecodeImageOptions): string | null {
  const { width, height } = size;
  const maxPixels = options.maxSourcePixels ?? DEFAULT_MAX_SOURCE_PIXELS;
  if (width * height > maxPixels) return `image is ${width}×${height}; at most ${maxPixels} pixels are accepted`;
  if (options.resize === 'refuse' && (width !== options.width || height !== options.height)) {
    return `image is ${width}×${height}; this model takes exactly ${options.width}×${options.height} (it does not resize)`;
  }
  const min = options.minSourceSize;
  if (min && (width < min.width || height < min.height)) {
    return `image is ${width}×${height}; this model takes images of at least ${min.width}×${min.height}`;
  }
  return null;
}

/** Decodes one image's bytes (its header already checked) into the model's input values. */
async function decodeBytes(
  bytes: Uint8Array,
  options: DecodeImageOptions,
): Promise<{ pixels: Float32Array; source: ImageSize }> {
  const { height, width, channels, scaling, interpolation = 'bilinear' } = options;
  let decoded;
  try {
    decoded = await sharp(bytes, {
      limitInputPixels: options.maxSourcePixels ?? DEFAULT_MAX_SOURCE_PIXELS,
      autoOrient: true,
      // Truncated or corrupt data is refused rather than decoded as grey (the default for untrusted input).
      failOn: 'warning',
    })
      .toColourspace('srgb')
      .ensureAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new ImageDecodeError(`the image could not be decoded: ${(error as Error).message}`);
  }
  const { data, info } = decoded;
  if (info.channels !== 4) throw new ImageDecodeError(`the image decoded to ${info.channels} channels, not RGBA`);
  const pixels = toChannels(data, info.width * info.height, channels);
  const sized =
    info.width === width && info.height === height
      ? pixels
      : (interpolation === 'nearest' ? resizeNearest : resizeBilinear)(
          pixels,
          info.height,
          info.width,
          channels,
          height,
          width,
        );
  if (scaling === 'unit') for (let i = 0; i < sized.length; i++) sized[i]! /= 255;
  return { pixels: sized, source: { width: info.width, height: info.height } };
}

/** Decodes one image (base64, a data URL, or bytes). */
export async function decodeImage(image: string | Uint8Array, options: DecodeImageOptions): Promise<Float32Array> {
  return (await decodeImages([image], options)).pixels;
}

/**
 * Decodes one call's images. Every header is read and checked (each image's size and policy, then the call's
 * pixel budget) before any image is decoded; they are then decoded one at a time, so a call holds one
 * decoded source at once. A refusal names the image's index.
 */
export async function decodeImages(
  images: (string | Uint8Array)[],
  options: DecodeImageOptions,
): Promise<DecodedImages> {
  checkOptions(options);
  const size = options.height * options.width * options.channels;
  const maxPixelsPerCall = options.maxPixelsPerCall ?? Infinity;
  const refuse = (index: number, error: unknown): never => {
    if (error instanceof ImageDecodeError) throw new ImageDecodeError(error.message, index);
    throw error;
  };
  const files: Buffer[] = [];
  let callPixels = options.pixelsBefore ?? 0;
  for (const [index, image] of images.entries()) {
    try {
      const bytes = toBytes(image);
      const source = await imageSize(bytes);
      const problem = sizeProblem(source, options);
      if (problem !== null) throw new ImageDecodeError(problem);
      callPixels += source.width * source.height;
      if (callPixels > maxPixelsPerCall) {
        throw new ImageDecodeError(`the images of one call may hold at most ${maxPixelsPerCall} pixels in all`);
      }
      files.push(bytes);
    } catch (error) {
      refuse(index, error);
    }
  }
  const pixels = new Float32Array(images.length * size);
  const sources: ImageSize[] = [];
  for (const [index, bytes] of files.entries()) {
    try {
      const decoded = await decodeBytes(bytes, options);
      pixels.set(decoded.pixels, index * size);
      sources.push(decoded.source);
    } catch (error) {
      refuse(index, error);
    }
  }
  return { pixels, sources };
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
