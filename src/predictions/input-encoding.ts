// Turns a predict call's JSON `inputs` into one batch tensor, checking every value against the version's
// signature. A bad value is BAD_USER_INPUT with the path of the offending value (e.g. input.inputs[2][27]).
// Everything that can be checked per instance is checked here, before batching, so that one caller's bad
// value never fails a batch merged with other callers' requests. Client data is walked iteratively (no
// recursion on its nesting), and images and large texts are decoded in worker threads.
import type { TensorInput } from '../inference/engine.js';
import { outputSizeOf, type InputSpec, type NamedSignature, type SingleSignature } from '../models/signature.js';
import { base64PngSize, ImageDecodeError, type ImagePreprocessing } from '../preprocessing/image.js';
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
  /** Pixels of one image, read from its PNG header before decoding. */
  maxImagePixels: number;
  maxImagePixelsPerCall: number;
  /** PNG file bytes of all images in a call (from the base64 length, before decoding). */
  maxImageBytesPerCall: number;
}

const ROOT = 'input.inputs';
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

/** A client's raw tabular value, before standardising: any number float32 holds. */
const ANY_FLOAT32: ValueRule = { dtype: 'float32', indexBound: undefined };

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

/** One call's images: each checked from its header, all within the call's budgets, before any decoding. */
function checkImages(
  images: { index: number; text: string }[],
  limits: InputLimits,
  root: string,
  name: string | undefined,
): void {
  let pixels = 0;
  let bytes = 0;
  for (const { index, text: base64 } of images) {
    const path = instancePath(root, index, name);
    let size;
    try {
      size = base64PngSize(base64);
    } catch (error) {
      throw bad(`not a decodable PNG image (${(error as Error).message})`, path);
    }
    const imagePixels = size.width * size.height;
    if (imagePixels > limits.maxImagePixels) {
      throw bad(`image is ${size.width}×${size.height}; at most ${limits.maxImagePixels} pixels are accepted`, path);
    }
    pixels += imagePixels;
    bytes += Math.ceil((base64.length * 3) / 4);
    if (pixels > limits.maxImagePixelsPerCall) {
      throw bad(`the images of one call may hold at most ${limits.maxImagePixelsPerCall} pixels in all`, path);
    }
    if (bytes > limits.maxImageBytesPerCall) {
      throw bad(`the images of one call may take at most ${limits.maxImageBytesPerCall} bytes in all`, path);
    }
  }
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

  /** Encodes the instances of a single-tensor signature into a [n, ...shape] tensor in its dtype. */
  async encode(
    signature: SingleSignature,
    inputs: unknown,
    root = ROOT,
    limits: Partial<InputLimits> = {},
  ): Promise<TensorInput> {
    const merged = { ...this.limits, ...limits };
    const instances = checkedInstances(inputs, outputSizeOf(signature), merged, root);
    return this.#encodeTensor(signature.input, instances, merged, root, undefined);
  }

  /**
   * Encodes the instances of a named signature, each an object of one value per named input, into one tensor
   * per input, in the signature's order.
   */
  async encodeNamed(
    signature: NamedSignature,
    inputs: unknown,
    root = ROOT,
    limits: Partial<InputLimits> = {},
  ): Promise<TensorInput[]> {
    const merged = { ...this.limits, ...limits };
    const instances = checkedInstances(inputs, outputSizeOf(signature), merged, root);
    const specs = signature.inputs;
    const columns = specs.map(() => new Array<unknown>(instances.length));
    instances.forEach((instance: unknown, i) => {
      const path = `${root}[${i}]`;
      if (instance === null || typeof instance !== 'object' || Array.isArray(instance)) {
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
    return Promise.all(specs.map((spec, j) => this.#encodeTensor(spec, columns[j]!, merged, root, spec.name)));
  }

  async #encodeTensor(
    spec: InputSpec,
    inputs: unknown[],
    limits: InputLimits,
    root: string,
    name: string | undefined,
  ): Promise<TensorInput> {
    const { maxStringLength, maxDepth } = limits;
    const { shape, dtype, preprocessing, embeddingInputDim } = spec;
    const rule: ValueRule = { dtype, indexBound: embeddingInputDim };
    const size = shape.reduce((a, b) => a * b, 1);
    const data = dtype === 'int32' ? new Int32Array(inputs.length * size) : new Float32Array(inputs.length * size);

    const strings: { index: number; text: string }[] = [];
    let stringChars = 0;
    inputs.forEach((instance: unknown, i) => {
      const path = instancePath(root, i, name);
      const offset = i * size;
      if (typeof instance === 'string') {
        if (instance.length > maxStringLength) throw bad(`at most ${maxStringLength} characters`, path);
        if (preprocessing.kind !== 'text' && preprocessing.kind !== 'image')
          throw bad('this model takes numbers, not strings', path);
        strings.push({ index: i, text: instance });
        stringChars += instance.length;
      } else if (instance !== null && typeof instance === 'object' && !Array.isArray(instance)) {
        if (preprocessing.kind !== 'tabular') throw bad('this model takes arrays, not objects', path);
        writeTabular(instance as Record<string, unknown>, preprocessing.features, rule, data, offset, path);
      } else {
        writeNumeric(instance, shape, rule, maxDepth, data, offset, path);
      }
    });
    if (strings.length > 0) {
      if (preprocessing.kind === 'image')
        await this.#writeImages(strings, preprocessing, limits, data, size, root, name);
      else if (preprocessing.kind === 'text') await this.#writeTexts(strings, stringChars, preprocessing, data, size);
    }
    return { data, shape: [inputs.length, ...shape], dtype };
  }

  async #writeImages(
    images: { index: number; text: string }[],
    preprocessing: ImagePreprocessing,
    limits: InputLimits,
    data: Float32Array | Int32Array,
    size: number,
    root: string,
    name: string | undefined,
  ): Promise<void> {
    checkImages(images, limits, root, name);
    const options = { ...preprocessing, maxSourcePixels: limits.maxImagePixels };
    await Promise.all(
      images.map(async ({ index, text }) => {
        try {
          data.set(await this.pool.decodeImage(text, options), index * size);
        } catch (error) {
          if (!(error instanceof ImageDecodeError)) throw error;
          throw bad(`not a decodable PNG image (${error.message})`, instancePath(root, index, name));
        }
      }),
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
