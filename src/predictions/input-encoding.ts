// Turns a predict call's JSON `inputs` into one batch tensor, checking every value against the version's
// signature. A bad value is BAD_USER_INPUT with the path of the offending value (e.g. input.inputs[2][27]).
// Everything that can be checked per instance is checked here, before batching, so that one caller's bad
// value never fails a batch merged with other callers' requests. Client data is walked iteratively (no
// recursion on its nesting), and images and large texts are decoded in worker threads. What is accepted but
// likely wrong (pixels 0..255 sent to a model that reads 0..1, an image stretched to another aspect ratio)
// is said in the call's warnings.
import type { TensorInput } from '../inference/engine.js';
import {
  outputSizeOf,
  SINGLE_INPUT_NAME,
  type InputSpec,
  type NamedSignature,
  type SingleSignature,
} from '../models/signature.js';
import { ImageDecodeError, type ImagePreprocessing, type ImageSize } from '../preprocessing/image.js';
import type { PreprocessingPool } from '../preprocessing/preprocessing-pool.js';
import { encodeText, encodeTokens, type TextPreprocessing } from '../preprocessing/text.js';
import { BadUserInputError } from '../server/errors.js';

export interface InputLimits {
  maxInstances: number;
  maxStringLength: number;
  /** Nesting levels of one instance (a [28, 28, 1] instance has 3). */
  maxDepth: number;
  /** Output values per call (instances × the signature's output size). */
  maxOutputValues: number;
  /** Pixels of one image, read from its header before decoding. */
  maxImagePixels: number;
  maxImagePixelsPerCall: number;
  /** File bytes of all images in a call (from the base64 length, before decoding). */
  maxImageBytesPerCall: number;
}

const ROOT = 'input.inputs';

/**
 * Where errors say the values are: a root such as `input.inputs` (instance 2 of input `a` is `input.inputs[2].a`),
 * or, for a request that sends each input apart (the Open Inference Protocol's tensors), a name for the list and
 * one per input (instance 2 of input `a` is then `${input('a')}[2]`).
 */
export type InputRoot = string | { list: string; input: (name: string) => string };

/** The root of the list of instances, and where an input's instance `i` is (`${root}[i]`, then `.${name}`). */
function rootsOf(root: InputRoot, name: string): { list: string; root: string; name: string | undefined } {
  return typeof root === 'string'
    ? { list: root, root, name }
    : { list: root.list, root: root.input(name), name: undefined };
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
// Below this many characters in a call, tokenising on the event loop costs well under a millisecond and a
// worker round trip would cost more.
const INLINE_TEXT_CHARS = 16 * 1024;

const bad = (message: string, path: string) => new BadUserInputError(`${path}: ${message}`, path);

/** What every value of an instance must be, in the tensor's dtype. */
interface ValueRule {
  dtype: 'float32' | 'int32';
  /** Exclusive upper bound of an Embedding-fed input's ids (which must then be integers ≥ 0). */
  indexBound: number | undefined;
}

/**
 * The bounds numeric values are compared with (±Infinity when none): the signature's declared range, which is
 * enforced, or the plausible values of a unit-scaled image model, outside which the caller is warned.
 */
interface RangeRule {
  low: number;
  high: number;
  enforced: boolean;
}

/** Values outside a warned-about range, counted across a call's instances. */
interface OutOfRange {
  count: number;
  first: { path: string; value: number } | null;
}

/** A client's raw tabular value, before standardising: any number float32 holds. */
const ANY_FLOAT32: ValueRule = { dtype: 'float32', indexBound: undefined };

// Pixels scaled to [0, 1] that land beyond these were almost surely sent as 0..255 (or unnormalised).
const UNIT_WARN_LOW = -1;
const UNIT_WARN_HIGH = 2;

function rangeRule({ range, preprocessing }: InputSpec): RangeRule {
  if (range) return { low: range.min, high: range.max, enforced: true };
  if (preprocessing.kind === 'image' && preprocessing.scaling === 'unit') {
    return { low: UNIT_WARN_LOW, high: UNIT_WARN_HIGH, enforced: false };
  }
  return { low: -Infinity, high: Infinity, enforced: false };
}

/** Why `value` cannot go into the tensor, or null when it can. */
function valueProblem(value: number, rule: ValueRule): string | null {
  if (rule.dtype === 'int32') {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) return 'expected a 32-bit integer';
  } else if (!Number.isFinite(Math.fround(value))) {
    // 1e39 is a finite double but Infinity in float32.
    return 'expected a finite number within float32 range (±3.4e38)';
  }
  if (rule.indexBound !== undefined && !(Number.isInteger(value) && value >= 0 && value < rule.indexBound)) {
    return `expected a token id, an integer from 0 to ${rule.indexBound - 1}`;
  }
  return null;
}

/** The dimensions of a (possibly ragged) nested array, read along its first elements, up to `maxDepth` + 1. */
function outlineOf(value: unknown, maxDepth: number): number[] {
  const dims: number[] = [];
  for (let node = value; Array.isArray(node) && dims.length <= maxDepth; node = node[0]) dims.push(node.length);
  return dims;
}

const pathOf = (root: string, indexes: readonly number[]) => root + indexes.map((i) => `[${i}]`).join('');

/** Where instance `index`'s value is: `input.inputs[2]`, or `input.inputs[2].a` for the named input `a`. */
const instancePath = (root: string, index: number, name: string | undefined) =>
  name === undefined ? `${root}[${index}]` : `${root}[${index}].${name}`;

/**
 * Writes one numeric instance into `out` at `offset`. Any nesting whose element count equals the input size
 * is accepted (784 numbers, 28×28 or 28×28×1 for a [784] or [28, 28, 1] input); values are read in row-major
 * order and every error names the value's path in the caller's own nesting.
 */
function writeNumeric(
  value: unknown,
  shape: number[],
  rule: ValueRule,
  range: RangeRule,
  outside: OutOfRange,
  maxDepth: number,
  out: Float32Array | Int32Array,
  offset: number,
  path: string,
): void {
  const size = shape.reduce((a, b) => a * b, 1);
  const dims = outlineOf(value, maxDepth);
  if (dims.length > maxDepth) throw bad(`nested deeper than ${maxDepth} levels`, path);
  if (dims.length === 0) throw bad(`expected an array of ${size} numbers (shape [${shape.join(', ')}])`, path);
  if (dims.reduce((a, b) => a * b, 1) !== size) {
    throw bad(`expected ${size} numbers (shape [${shape.join(', ')}]) but got shape [${dims.join(', ')}]`, path);
  }
  // Row-major, by recursion over at most maxDepth levels; `indexes` is kept for error paths only.
  const leafDepth = dims.length - 1;
  const indexes: number[] = [];
  let at = offset;
  const walk = (node: unknown[], depth: number): void => {
    if (depth === leafDepth) {
      for (let i = 0; i < node.length; i++) {
        const child = node[i];
        const problem = typeof child === 'number' ? valueProblem(child, rule) : 'expected a finite number';
        if (problem !== null) throw bad(problem, pathOf(path, [...indexes, i]));
        out[at++] = child as number;
      }
      return;
    }
    const length = dims[depth + 1]!;
    for (let i = 0; i < node.length; i++) {
      const child = node[i];
      if (!Array.isArray(child) || child.length !== length) {
        throw bad(`expected ${length} elements (a rectangular array)`, pathOf(path, [...indexes, i]));
      }
      indexes.push(i);
      walk(child, depth + 1);
      indexes.pop();
    }
  };
  walk(value as unknown[], 0);
  // A second tight pass over the written values, only for bounded inputs: unbounded ones (most) pay nothing.
  if (range.low !== -Infinity || range.high !== Infinity)
    checkRange(value, dims, range, outside, out, offset, size, path);
}

/**
 * Checks an instance's values as the model gets them (written in `out`, float32 for float inputs) against
 * `range`; the error, or the call's first warned-about value, names the value as the caller sent it.
 */
function checkRange(
  value: unknown,
  dims: number[],
  range: RangeRule,
  outside: OutOfRange,
  out: Float32Array | Int32Array,
  offset: number,
  size: number,
  path: string,
): void {
  const { low, high } = range;
  for (let i = 0; i < size; i++) {
    const written = out[offset + i]!;
    if (written >= low && written <= high) continue;
    outside.count++;
    if (!range.enforced && outside.first !== null) continue;
    // Row-major index → the caller's nesting, and the number as the caller sent it (not rounded to float32).
    const indexes = dims.map(() => 0);
    let node = value;
    for (let rest = i, d = dims.length - 1; d >= 0; d--) {
      indexes[d] = rest % dims[d]!;
      rest = Math.floor(rest / dims[d]!);
    }
    for (const index of indexes) node = (node as unknown[])[index];
    const sent = node as number;
    if (range.enforced) {
      throw bad(`value ${sent} is outside the declared range [${low}, ${high}]`, pathOf(path, indexes));
    }
    outside.first = { path: pathOf(path, indexes), value: sent };
  }
}

function writeTabular(
  value: Record<string, unknown>,
  features: { name: string; mean: number; std: number }[],
  rule: ValueRule,
  out: Float32Array | Int32Array,
  offset: number,
  path: string,
): void {
  const known = new Set(features.map((f) => f.name));
  const unknown = Object.keys(value).find((key) => !known.has(key));
  if (unknown !== undefined) throw bad(`unknown feature "${unknown}"`, `${path}.${unknown}`);
  features.forEach((feature, i) => {
    const raw = value[feature.name];
    const featurePath = `${path}.${feature.name}`;
    if (typeof raw !== 'number') throw bad('expected a finite number', featurePath);
    const rawProblem = valueProblem(raw, ANY_FLOAT32);
    if (rawProblem !== null) throw bad(rawProblem, featurePath);
    // The model sees the standardised value, which a tiny std can push out of float32 range.
    const standardised = (raw - feature.mean) / feature.std;
    const problem = valueProblem(standardised, rule);
    if (problem !== null) throw bad(`standardised value ${standardised}: ${problem}`, featurePath);
    out[offset + i] = standardised;
  });
}

/**
 * What a call's images have taken of its per-call budgets so far: a named signature's image inputs are encoded
 * one after another against one budget, so k image inputs share it rather than taking k of it.
 */
interface ImageUse {
  bytes: number;
  pixels: number;
}

/** A call's image files within its byte budget, from their lengths; pixels are checked on their headers (image.ts). */
function checkImageBytes(
  images: { index: number; image: string | Uint8Array }[],
  limits: InputLimits,
  used: ImageUse,
  root: string,
  name: string | undefined,
): void {
  for (const { index, image } of images) {
    used.bytes += typeof image === 'string' ? Math.ceil((image.length * 3) / 4) : image.byteLength;
    if (used.bytes > limits.maxImageBytesPerCall) {
      throw bad(
        `the images of one call may take at most ${limits.maxImageBytesPerCall} bytes in all`,
        instancePath(root, index, name),
      );
    }
  }
}

/** The warning for images stretched from other sizes, when the signature declares no resize policy. */
function resizeWarning(
  sources: { index: number; size: ImageSize }[],
  preprocessing: ImagePreprocessing,
  root: string,
  name: string | undefined,
): string | null {
  const { width, height } = preprocessing;
  const resized = sources.filter(({ size }) => size.width !== width || size.height !== height);
  if (resized.length === 0) return null;
  const [{ index, size }] = resized as [(typeof resized)[0]];
  const aspect = Math.abs(size.width / size.height - width / height) > 0.01 ? ', aspect ratio not kept' : '';
  const more = resized.length > 1 ? ` (and ${resized.length - 1} more image${resized.length > 2 ? 's' : ''})` : '';
  return `${instancePath(root, index, name)}${more}: image resized from ${size.width}×${size.height} to ${width}×${height}${aspect}; the model's signature declares no resize policy`;
}

/** The call's list of instances, within the instance and output budgets. */
function checkedInstances(inputs: unknown, outputSize: number, limits: InputLimits, root: string): unknown[] {
  const { maxInstances, maxOutputValues } = limits;
  if (!Array.isArray(inputs)) throw bad('expected a list of instances', root);
  if (inputs.length === 0) throw bad('give at least one instance', root);
  if (inputs.length > maxInstances) throw bad(`at most ${maxInstances} instances per call`, root);
  if (inputs.length * outputSize > maxOutputValues) {
    const fit = Math.floor(maxOutputValues / outputSize);
    throw bad(
      `this model outputs ${outputSize} values per instance; at most ${fit} instances fit in one call's ${maxOutputValues} output values`,
      root,
    );
  }
  return inputs;
}

export class InputEncoder {
  constructor(
    private readonly pool: PreprocessingPool,
    private readonly limits: InputLimits,
  ) {}

  /** PREDICT_MAX_OUTPUT_VALUES, which publishing checks a version's output size against. */
  get maxOutputValues(): number {
    return this.limits.maxOutputValues;
  }

  /** The per-image and per-call image budgets, which evaluations slice their chunks by. */
  get imageLimits(): Pick<InputLimits, 'maxImagePixels' | 'maxImagePixelsPerCall' | 'maxImageBytesPerCall'> {
    const { maxImagePixels, maxImagePixelsPerCall, maxImageBytesPerCall } = this.limits;
    return { maxImagePixels, maxImagePixelsPerCall, maxImageBytesPerCall };
  }

  /**
   * Encodes the instances of a single-tensor signature into a [n, ...shape] tensor in its dtype; what the caller
   * should know about inputs that were accepted is added to `warnings`. An image instance is a base64 string or,
   * from the REST image route, its bytes.
   */
  async encode(
    signature: SingleSignature,
    inputs: unknown,
    root: InputRoot = ROOT,
    limits: Partial<InputLimits> = {},
    warnings: string[] = [],
  ): Promise<TensorInput> {
    const merged = { ...this.limits, ...limits };
    const roots = rootsOf(root, SINGLE_INPUT_NAME);
    const instances = checkedInstances(inputs, outputSizeOf(signature), merged, roots.list);
    const used = { bytes: 0, pixels: 0 };
    return this.#encodeTensor(signature.input, instances, merged, used, roots.root, undefined, warnings);
  }

  /**
   * Encodes the instances of a named signature, each an object of one value per named input, into one tensor
   * per input, in the signature's order.
   */
  async encodeNamed(
    signature: NamedSignature,
    inputs: unknown,
    root: InputRoot = ROOT,
    limits: Partial<InputLimits> = {},
    warnings: string[] = [],
  ): Promise<TensorInput[]> {
    const merged = { ...this.limits, ...limits };
    const list = typeof root === 'string' ? root : root.list;
    const instances = checkedInstances(inputs, outputSizeOf(signature), merged, list);
    const specs = signature.inputs;
    const columns = specs.map(() => new Array<unknown>(instances.length));
    instances.forEach((instance: unknown, i) => {
      const path = `${list}[${i}]`;
      // Bytes (an image file) are refused before Object.keys, which would make one string per byte.
      if (
        instance === null ||
        typeof instance !== 'object' ||
        Array.isArray(instance) ||
        ArrayBuffer.isView(instance)
      ) {
        throw bad(`expected an object of named inputs (${specs.map((spec) => spec.name).join(', ')})`, path);
      }
      const values = instance as Record<string, unknown>;
      const unknown = Object.keys(values).find((key) => !specs.some((spec) => spec.name === key));
      if (unknown !== undefined) throw bad(`unknown input "${unknown}"`, `${path}.${unknown}`);
      specs.forEach((spec, j) => {
        if (!Object.hasOwn(values, spec.name)) throw bad(`missing input "${spec.name}"`, `${path}.${spec.name}`);
        columns[j]![i] = values[spec.name];
      });
    });
    // One input after another: the call's image budgets are the call's, whatever input its images feed.
    const used = { bytes: 0, pixels: 0 };
    const tensors: TensorInput[] = [];
    for (const [j, spec] of specs.entries()) {
      const roots = rootsOf(root, spec.name);
      tensors.push(await this.#encodeTensor(spec, columns[j]!, merged, used, roots.root, roots.name, warnings));
    }
    return tensors;
  }

  async #encodeTensor(
    spec: InputSpec,
    inputs: unknown[],
    limits: InputLimits,
    used: ImageUse,
    root: string,
    name: string | undefined,
    warnings: string[],
  ): Promise<TensorInput> {
    const { maxStringLength, maxDepth } = limits;
    const { shape, dtype, preprocessing, embeddingInputDim } = spec;
    const rule: ValueRule = { dtype, indexBound: embeddingInputDim };
    const range = rangeRule(spec);
    const outside: OutOfRange = { count: 0, first: null };
    const size = shape.reduce((a, b) => a * b, 1);
    const data = dtype === 'int32' ? new Int32Array(inputs.length * size) : new Float32Array(inputs.length * size);

    const strings: { index: number; text: string }[] = [];
    const files: { index: number; image: Uint8Array }[] = [];
    let stringChars = 0;
    inputs.forEach((instance: unknown, i) => {
      const path = instancePath(root, i, name);
      const offset = i * size;
      if (instance instanceof Uint8Array) {
        if (preprocessing.kind !== 'image') throw bad('this model does not take images', path);
        files.push({ index: i, image: instance });
      } else if (typeof instance === 'string') {
        if (instance.length > maxStringLength) throw bad(`at most ${maxStringLength} characters`, path);
        if (preprocessing.kind !== 'text' && preprocessing.kind !== 'image')
          throw bad('this model takes numbers, not strings', path);
        strings.push({ index: i, text: instance });
        stringChars += instance.length;
      } else if (instance !== null && typeof instance === 'object' && !Array.isArray(instance)) {
        if (preprocessing.kind !== 'tabular') throw bad('this model takes arrays, not objects', path);
        writeTabular(instance as Record<string, unknown>, preprocessing.features, rule, data, offset, path);
      } else {
        writeNumeric(instance, shape, rule, range, outside, maxDepth, data, offset, path);
      }
    });
    if (outside.first !== null) {
      const { path, value } = outside.first;
      const more = outside.count > 1 ? ` (and ${outside.count - 1} more value${outside.count > 2 ? 's' : ''})` : '';
      warnings.push(
        `${path}${more}: value ${value} is far outside [0, 1], the range of this model's pixels scaled by 1/255; was the image sent as 0..255? (the model's signature declares no range)`,
      );
    }
    if (preprocessing.kind === 'image' && (strings.length > 0 || files.length > 0)) {
      const images = [...strings.map(({ index, text }) => ({ index, image: text })), ...files].sort(
        (a, b) => a.index - b.index,
      );
      const warning = await this.#writeImages(images, preprocessing, limits, used, data, size, root, name);
      if (warning !== null) warnings.push(warning);
    } else if (strings.length > 0 && preprocessing.kind === 'text') {
      await this.#writeTexts(strings, stringChars, preprocessing, data, size);
    }
    return { data, shape: [inputs.length, ...shape], dtype };
  }

  /** Decodes a call's images in one worker task; returns the resize warning, if any. */
  async #writeImages(
    images: { index: number; image: string | Uint8Array }[],
    preprocessing: ImagePreprocessing,
    limits: InputLimits,
    used: ImageUse,
    data: Float32Array | Int32Array,
    size: number,
    root: string,
    name: string | undefined,
  ): Promise<string | null> {
    checkImageBytes(images, limits, used, root, name);
    const options = {
      ...preprocessing,
      maxSourcePixels: limits.maxImagePixels,
      maxPixelsPerCall: limits.maxImagePixelsPerCall,
      pixelsBefore: used.pixels,
    };
    let decoded;
    try {
      decoded = await this.pool.decodeImages(
        images.map(({ image }) => image),
        options,
      );
    } catch (error) {
      if (!(error instanceof ImageDecodeError)) throw error;
      throw bad(`image refused: ${error.message}`, instancePath(root, images[error.index ?? 0]!.index, name));
    }
    images.forEach(({ index }, i) => data.set(decoded.pixels.subarray(i * size, (i + 1) * size), index * size));
    for (const source of decoded.sources) used.pixels += source.width * source.height;
    if (preprocessing.resize !== undefined) return null;
    return resizeWarning(
      images.map(({ index }, i) => ({ index, size: decoded.sources[i]! })),
      preprocessing,
      root,
      name,
    );
  }

  async #writeTexts(
    texts: { index: number; text: string }[],
    totalChars: number,
    preprocessing: TextPreprocessing,
    data: Float32Array | Int32Array,
    size: number,
  ): Promise<void> {
    if (totalChars <= INLINE_TEXT_CHARS) {
      for (const { index, text } of texts) data.set(encodeText(text, preprocessing), index * size);
      return;
    }
    const leading = await this.pool.leadingTokens(
      texts.map(({ text }) => text),
      preprocessing.lowercase,
      preprocessing.maxLength,
    );
    texts.forEach(({ index }, i) => data.set(encodeTokens(leading[i]!, preprocessing), index * size));
  }
}
