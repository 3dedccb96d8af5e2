// Turns a predict call's JSON `inputs` into one batch tensor, checking every value against the version's
// signature. A bad value is BAD_USER_INPUT with the path of the offending value (e.g. input.inputs[2][27]).
import type { TensorInput } from '../inference/engine.js';
import type { Signature } from '../models/signature.js';
import { decodeImage } from '../preprocessing/image.js';
import { encodeText } from '../preprocessing/text.js';
import { BadUserInputError } from '../server/errors.js';

export interface InputLimits {
  maxInstances: number;
  maxStringLength: number;
}

const ROOT = 'input.inputs';
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

const bad = (message: string, path: string) => new BadUserInputError(`${path}: ${message}`, path);

/** The dimensions of a (possibly ragged) nested array, read along its first elements. */
function outlineOf(value: unknown): number[] {
  const dims: number[] = [];
  for (let node = value; Array.isArray(node); node = node[0]) dims.push(node.length);
  return dims;
}

/**
 * Writes one numeric instance into `out` at `offset`. Any nesting whose element count equals the input size
 * is accepted (784 numbers, 28×28 or 28×28×1 for a [784] or [28, 28, 1] input); values are read in row-major
 * order and every error names the value's path in the caller's own nesting.
 */
function writeNumeric(
  value: unknown,
  shape: number[],
  dtype: 'float32' | 'int32',
  out: Float32Array | Int32Array,
  offset: number,
  path: string,
): void {
  const size = shape.reduce((a, b) => a * b, 1);
  const dims = outlineOf(value);
  if (dims.length === 0) throw bad(`expected an array of ${size} numbers (shape [${shape.join(', ')}])`, path);
  if (dims.reduce((a, b) => a * b, 1) !== size) {
    throw bad(`expected ${size} numbers (shape [${shape.join(', ')}]) but got shape [${dims.join(', ')}]`, path);
  }
  const walk = (node: unknown, rest: number[], at: number, nodePath: string): void => {
    if (rest.length === 0) {
      if (typeof node !== 'number' || !Number.isFinite(node)) throw bad('expected a finite number', nodePath);
      if (dtype === 'int32' && (!Number.isInteger(node) || node < INT32_MIN || node > INT32_MAX)) {
        throw bad('expected a 32-bit integer', nodePath);
      }
      out[at] = node;
      return;
    }
    const [length, ...inner] = rest as [number, ...number[]];
    if (!Array.isArray(node) || node.length !== length)
      throw bad(`expected ${length} elements (a rectangular array)`, nodePath);
    const stride = inner.reduce((a, b) => a * b, 1);
    node.forEach((child, i) => walk(child, inner, at + i * stride, `${nodePath}[${i}]`));
  };
  walk(value, dims, offset, path);
}

function writeTabular(
  value: Record<string, unknown>,
  features: { name: string; mean: number; std: number }[],
  out: Float32Array | Int32Array,
  offset: number,
  path: string,
): void {
  const known = new Set(features.map((f) => f.name));
  const unknown = Object.keys(value).find((key) => !known.has(key));
  if (unknown !== undefined) throw bad(`unknown feature "${unknown}"`, `${path}.${unknown}`);
  features.forEach((feature, i) => {
    const raw = value[feature.name];
    if (typeof raw !== 'number' || !Number.isFinite(raw))
      throw bad('expected a finite number', `${path}.${feature.name}`);
    out[offset + i] = (raw - feature.mean) / feature.std;
  });
}

/** Encodes the instances into a [n, ...shape] tensor in the signature's dtype. */
export function encodeInputs(signature: Signature, inputs: unknown, limits: InputLimits, root = ROOT): TensorInput {
  if (!Array.isArray(inputs)) throw bad('expected a list of instances', root);
  if (inputs.length === 0) throw bad('give at least one instance', root);
  if (inputs.length > limits.maxInstances) throw bad(`at most ${limits.maxInstances} instances per call`, root);
  const { shape, dtype, preprocessing } = signature.input;
  const size = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'int32' ? new Int32Array(inputs.length * size) : new Float32Array(inputs.length * size);

  inputs.forEach((instance, i) => {
    const path = `${root}[${i}]`;
    const offset = i * size;
    if (typeof instance === 'string') {
      if (instance.length > limits.maxStringLength) throw bad(`at most ${limits.maxStringLength} characters`, path);
      if (preprocessing.kind === 'text') {
        data.set(encodeText(instance, preprocessing), offset);
      } else if (preprocessing.kind === 'image') {
        try {
          data.set(decodeImage(instance, preprocessing), offset);
        } catch (error) {
          throw bad(`not a decodable PNG image (${(error as Error).message})`, path);
        }
      } else {
        throw bad('this model takes numbers, not strings', path);
      }
    } else if (instance !== null && typeof instance === 'object' && !Array.isArray(instance)) {
      if (preprocessing.kind !== 'tabular') throw bad('this model takes arrays, not objects', path);
      writeTabular(instance as Record<string, unknown>, preprocessing.features, data, offset, path);
    } else {
      writeNumeric(instance, shape, dtype, data, offset, path);
    }
  });
  return { data, shape: [inputs.length, ...shape], dtype };
}
