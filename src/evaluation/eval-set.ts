// A held-out evaluation set stored next to a model (eval.json), so the accuracy of a derived version (for
// example a watermarked copy) can be measured on the same examples the original was scored on.
//
// The inputs are stored model-ready (after preprocessing), packed as little-endian binary in base64:
// model input = stored value / divideBy. Images are bytes with divideBy 255 (exactly what the 'unit' image
// preprocessing yields); token ids are uint16 or int32 with divideBy 1. A few raw examples (base64 PNG or
// text) are kept as well, to check a predict path through its preprocessing end to end.
import { z } from 'zod';

export const EVAL_SET_FORMAT = 'modelmarket-eval-set/1';

export type StoredDtype = 'uint8' | 'uint16' | 'int32' | 'float32';
export type ModelDtype = 'float32' | 'int32';

const BYTES_PER_VALUE: Record<StoredDtype, number> = { uint8: 1, uint16: 2, int32: 4, float32: 4 };
const INTEGER_RANGE: Record<Exclude<StoredDtype, 'float32'>, [number, number]> = {
  uint8: [0, 0xff],
  uint16: [0, 0xffff],
  int32: [-(2 ** 31), 2 ** 31 - 1],
};

const unit = z.number().min(0).max(1);

const evalSetFileSchema = z
  .object({
    format: z.literal(EVAL_SET_FORMAT),
    /** What the examples are, e.g. "MNIST, stratified 20% held-out split (seed 42), first 500". */
    dataset: z.string().min(1),
    labels: z.array(z.string()).min(2),
    count: z.number().int().positive(),
    /** One example's model input: shape without the batch dimension, and dtype. */
    input: z
      .object({
        shape: z.array(z.number().int().positive()).min(1),
        dtype: z.enum(['float32', 'int32']),
      })
      .strict(),
    data: z
      .object({
        storedAs: z.enum(['uint8', 'uint16', 'int32', 'float32']),
        divideBy: z.number().positive(),
        /** Row-major [count, ...shape], little-endian. */
        base64: z.string(),
      })
      .strict(),
    /** True class index of each example. */
    targets: z.array(z.number().int().min(0)),
    /** Scores of the model the set was saved with, on exactly these examples. */
    baseline: z.object({ accuracy: unit, macroF1: unit }).strict().optional(),
    /** Some examples as a client would send them (base64 PNG or text); `index` is their row in `data`. */
    examples: z.array(z.object({ index: z.number().int().min(0), input: z.string() }).strict()),
  })
  .strict();

export type EvalSetFile = z.infer<typeof evalSetFileSchema>;

export interface EvalSet {
  dataset: string;
  labels: string[];
  count: number;
  /** One example's shape, without the batch dimension. */
  shape: number[];
  dtype: ModelDtype;
  /** Model inputs, row-major [count, ...shape]: example i is subarray(i × exampleSize, (i + 1) × exampleSize). */
  inputs: Float32Array | Int32Array;
  exampleSize: number;
  targets: number[];
  baseline?: { accuracy: number; macroF1: number };
  examples: { index: number; input: string }[];
}

export interface EvalSetSource {
  dataset: string;
  labels: string[];
  shape: number[];
  dtype: ModelDtype;
  /** Stored values, row-major [count, ...shape]; the model input is value / divideBy. */
  values: ArrayLike<number>;
  storedAs: StoredDtype;
  divideBy: number;
  targets: number[];
  baseline?: { accuracy: number; macroF1: number };
  examples: { index: number; input: string }[];
}

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function pack(values: ArrayLike<number>, storedAs: StoredDtype): Buffer {
  const bytes = Buffer.alloc(values.length * BYTES_PER_VALUE[storedAs]);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (storedAs === 'float32') {
      if (!Number.isFinite(value)) throw new RangeError(`value ${i} (${value}) is not finite`);
      view.setFloat32(4 * i, value, true);
      continue;
    }
    const [min, max] = INTEGER_RANGE[storedAs];
    if (!Number.isInteger(value) || value < min || value > max)
      throw new RangeError(`value ${i} (${value}) does not fit ${storedAs}`);
    if (storedAs === 'uint8') view.setUint8(i, value);
    else if (storedAs === 'uint16') view.setUint16(2 * i, value, true);
    else view.setInt32(4 * i, value, true);
  }
  return bytes;
}

function unpack(bytes: Buffer, storedAs: StoredDtype, divideBy: number, dtype: ModelDtype): Float32Array | Int32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes.byteLength / BYTES_PER_VALUE[storedAs];
  const read: (i: number) => number = {
    uint8: (i: number) => view.getUint8(i),
    uint16: (i: number) => view.getUint16(2 * i, true),
    int32: (i: number) => view.getInt32(4 * i, true),
    float32: (i: number) => view.getFloat32(4 * i, true),
  }[storedAs];
  const out = dtype === 'int32' ? new Int32Array(count) : new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = read(i) / divideBy;
  return out;
}

function checkRows(
  targets: readonly number[],
  count: number,
  labels: readonly string[],
  examples: EvalSetFile['examples'],
): void {
  if (targets.length !== count) throw new RangeError(`${targets.length} targets for ${count} examples`);
  const bad = targets.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= labels.length);
  if (bad !== -1) throw new RangeError(`target ${bad} (${targets[bad]}) is not a label index`);
  if (!examples.every(({ index }) => Number.isInteger(index) && index >= 0 && index < count)) {
    throw new RangeError('an example index is not a row of the set');
  }
}

/** The eval.json document for a set of examples. */
export function encodeEvalSet(source: EvalSetSource): EvalSetFile {
  const { shape, dtype, values, storedAs, divideBy, targets, labels } = source;
  const exampleSize = product(shape);
  if (values.length === 0 || values.length % exampleSize !== 0) {
    throw new RangeError(`${values.length} values do not form examples of shape [${shape.join(', ')}]`);
  }
  const count = values.length / exampleSize;
  checkRows(targets, count, labels, source.examples);
  if (dtype === 'int32' && (divideBy !== 1 || storedAs === 'float32')) {
    throw new RangeError('int32 model inputs must be stored as integers with divideBy 1');
  }
  const file: EvalSetFile = {
    format: EVAL_SET_FORMAT,
    dataset: source.dataset,
    labels: [...labels],
    count,
    input: { shape: [...shape], dtype },
    data: { storedAs, divideBy, base64: pack(values, storedAs).toString('base64') },
    targets: [...targets],
    examples: source.examples,
  };
  if (source.baseline) file.baseline = source.baseline;
  return evalSetFileSchema.parse(file);
}

/** Validates a parsed eval.json and unpacks its model inputs. */
export function decodeEvalSet(raw: unknown): EvalSet {
  const parsed = evalSetFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new RangeError(`invalid eval set: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const file = parsed.data;
  const exampleSize = product(file.input.shape);
  const bytes = Buffer.from(file.data.base64, 'base64');
  const expectedBytes = file.count * exampleSize * BYTES_PER_VALUE[file.data.storedAs];
  if (bytes.byteLength !== expectedBytes) {
    throw new RangeError(`invalid eval set: data has ${bytes.byteLength} bytes, expected ${expectedBytes}`);
  }
  if (file.input.dtype === 'int32' && (file.data.divideBy !== 1 || file.data.storedAs === 'float32')) {
    throw new RangeError('invalid eval set: int32 inputs must be stored as integers with divideBy 1');
  }
  checkRows(file.targets, file.count, file.labels, file.examples);
  const evalSet: EvalSet = {
    dataset: file.dataset,
    labels: file.labels,
    count: file.count,
    shape: file.input.shape,
    dtype: file.input.dtype,
    inputs: unpack(bytes, file.data.storedAs, file.data.divideBy, file.input.dtype),
    exampleSize,
    targets: file.targets,
    examples: file.examples,
  };
  if (file.baseline) evalSet.baseline = file.baseline;
  return evalSet;
}
