// The Open Inference Protocol (KServe v2 REST) over the same use cases as GraphQL: model metadata from the
// version's signature, and `infer`, which runs PredictService (the same authorization, licence checks, quota,
// metering and idempotency) with the request's tensors read into predict's instances against the signature it
// resolves (so that a refused tensor is recorded as a refused GraphQL input is), and its answers told as tensors.
// Tensor data may be flat (row-major) or nested, as the protocol allows in REST; the first dimension of every
// input is the batch: one instance per row. A tabular input's row is read as its features, so that it is
// standardised as GraphQL's feature objects are.
import type { Actor } from '../auth/principal.js';
import type { ModelsService } from '../models/models-service.js';
import {
  inputSpecs,
  isNamed,
  MAX_NAMED_TENSORS,
  outputSpecs,
  SINGLE_OUTPUT_NAME,
  type InputSpec,
  type Signature,
} from '../models/signature.js';
import { BadUserInputError } from '../server/errors.js';
import type { InputRoot } from './input-encoding.js';
import { assertStorableRefs, type Prediction, type PredictService } from './predict-service.js';
import type { ServingCatalog } from './serving-catalog.js';

export interface TensorMetadata {
  name: string;
  datatype: string;
  /** -1: any size (the batch). */
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface ResponseTensor {
  name: string;
  datatype: 'FP32';
  shape: number[];
  data: number[];
}

export interface InferenceResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, unknown>;
  outputs: ResponseTensor[];
}

export interface InferenceLimits {
  /** PREDICT_MAX_INSTANCES: rows of one request (checked again by predict, but before any row is built here). */
  maxInstances: number;
  /** PREDICT_MAX_INPUT_DEPTH: nesting of one instance; a tensor's data may nest one level more (the batch). */
  maxDepth: number;
}

/** What the server calls the models it serves (tfjs layers models). */
const PLATFORM = 'tensorflowjs';
/** The longest request `id` echoed back (it is not stored). */
const MAX_ID_LENGTH = 256;
const FLOAT_TYPES: ReadonlySet<string> = new Set(['FP16', 'FP32', 'FP64']);
const INTEGER_TYPES: ReadonlySet<string> = new Set([
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
]);

const bad = (message: string, field: string) => new BadUserInputError(`${field}: ${message}`, field);
const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** Whether an input takes strings (BYTES): text always, images as base64 PNG. */
const takesBytes = (spec: InputSpec) => spec.preprocessing.kind === 'text' || spec.preprocessing.kind === 'image';

function inputMetadata(spec: InputSpec & { name: string }): TensorMetadata {
  // A text model's tensor is its token ids; clients send the text.
  if (spec.preprocessing.kind === 'text') return { name: spec.name, datatype: 'BYTES', shape: [-1] };
  return { name: spec.name, datatype: spec.dtype === 'int32' ? 'INT32' : 'FP32', shape: [-1, ...spec.shape] };
}

function outputMetadata(signature: Signature): TensorMetadata[] {
  return outputSpecs(signature).map((spec) => ({
    name: spec.name,
    datatype: 'FP32',
    shape: [-1, spec.kind === 'classification' ? spec.labels.length : spec.size],
  }));
}

/** A request's input tensor, checked against the spec of the input it names. */
interface RequestTensor {
  spec: InputSpec & { name: string };
  rows: number;
  /** Values per row. */
  width: number;
  /** BYTES: one string per row. */
  bytes: boolean;
  data: unknown[];
}

/**
 * The values of a tensor's `data`, flat in row-major order, whether sent flat or nested (at most `depth`
 * levels); each value checked to be a number (or a string, for BYTES).
 */
function flatData(data: unknown, depth: number, strings: boolean, field: string): unknown[] {
  if (!Array.isArray(data)) throw bad('expected an array', field);
  const flat: unknown[] = [];
  // Iterative, so that nesting sent by a client never deepens the stack.
  const stack: { node: unknown[]; index: number }[] = [{ node: data, index: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.index === top.node.length) {
      stack.pop();
      continue;
    }
    const value = top.node[top.index++];
    if (Array.isArray(value)) {
      if (stack.length >= depth) throw bad(`nested deeper than the tensor's ${depth} dimensions`, field);
      stack.push({ node: value, index: 0 });
    } else if (strings ? typeof value === 'string' : typeof value === 'number') {
      flat.push(value);
    } else {
      throw bad(
        `expected ${strings ? 'strings (BYTES)' : 'numbers'}, got ${value === null ? 'null' : typeof value}`,
        field,
      );
    }
  }
  return flat;
}

function requestTensor(raw: unknown, signature: Signature, limits: InferenceLimits, field: string): RequestTensor {
  if (!isObject(raw)) throw bad('expected an object {name, shape, datatype, data}', field);
  const { name, shape, datatype, data } = raw;
  const specs = inputSpecs(signature);
  if (typeof name !== 'string') throw bad('expected a string', `${field}.name`);
  const spec = specs.find((candidate) => candidate.name === name);
  if (!spec) {
    throw bad(
      `no input named "${name.slice(0, 64)}"; this model takes ${specs.map((s) => s.name).join(', ')}`,
      `${field}.name`,
    );
  }
  if (typeof datatype !== 'string') throw bad('expected a string', `${field}.datatype`);
  const bytes = datatype === 'BYTES';
  const numeric = spec.dtype === 'int32' ? INTEGER_TYPES : FLOAT_TYPES;
  if (bytes ? !takesBytes(spec) : !numeric.has(datatype)) {
    const accepted = [...numeric].join(', ') + (takesBytes(spec) ? ', BYTES' : '');
    throw bad(`input ${name} takes ${accepted}, not ${datatype.slice(0, 16)}`, `${field}.datatype`);
  }
  const width = bytes ? 1 : spec.shape.reduce((a, b) => a * b, 1);
  const expected = bytes
    ? '[n] or [n, 1] (one string per instance)'
    : `[n, ${spec.shape.join(', ')}] (or any [n, …] of ${width} values per instance)`;
  const dims = Array.isArray(shape) ? shape : [];
  if (
    dims.length < 1 ||
    dims.length > limits.maxDepth + 1 ||
    !dims.every((d) => Number.isSafeInteger(d) && (d as number) >= 0) ||
    dims.slice(1).reduce<number>((a, b) => a * (b as number), 1) !== width
  ) {
    throw bad(`input ${name} takes the shape ${expected}`, `${field}.shape`);
  }
  const rows = dims[0] as number;
  if (rows < 1 || rows > limits.maxInstances)
    throw bad(`1 to ${limits.maxInstances} instances (the first dimension)`, `${field}.shape`);
  const flat = flatData(data, dims.length, bytes, `${field}.data`);
  if (flat.length !== rows * width) {
    throw bad(
      `the shape [${dims.join(', ')}] holds ${rows * width} values but data has ${flat.length}`,
      `${field}.data`,
    );
  }
  return { spec, rows, width, bytes, data: flat };
}

/** One instance of the tensor, in predict's form: a string, the row's values, or a tabular row's {feature: value}. */
function row(tensor: RequestTensor, i: number): unknown {
  if (tensor.bytes) return tensor.data[i];
  const values = tensor.data.slice(i * tensor.width, (i + 1) * tensor.width);
  const { preprocessing } = tensor.spec;
  // The signature's shape is [features.length], so the row holds one value per feature, in their order.
  if (preprocessing.kind === 'tabular')
    return Object.fromEntries(preprocessing.features.map((f, k) => [f.name, values[k]]));
  return values;
}

/**
 * The instances `predict` takes, from the request's input tensors (all of the signature's, with one batch size),
 * and the root that makes the encoder's errors name the tensor's data (`inputs[1].data[row]…`).
 */
function instancesOf(
  rawInputs: unknown,
  signature: Signature,
  limits: InferenceLimits,
): { instances: unknown[]; root: InputRoot } {
  if (!Array.isArray(rawInputs) || rawInputs.length === 0 || rawInputs.length > MAX_NAMED_TENSORS) {
    throw bad(`expected 1 to ${MAX_NAMED_TENSORS} input tensors`, 'inputs');
  }
  const tensors = rawInputs.map((raw, j) => requestTensor(raw, signature, limits, `inputs[${j}]`));
  const names = new Set(tensors.map((t) => t.spec.name));
  if (names.size !== tensors.length) throw bad('each input may be given once', 'inputs');
  const missing = inputSpecs(signature).find((spec) => !names.has(spec.name));
  if (missing) throw bad(`missing input "${missing.name}"`, 'inputs');
  const rows = tensors[0]!.rows;
  const uneven = tensors.findIndex((t) => t.rows !== rows);
  if (uneven !== -1) throw bad(`every input must have the same first dimension (${rows})`, `inputs[${uneven}].shape`);
  const root = {
    list: 'inputs',
    input: (name: string) => `inputs[${tensors.findIndex((t) => t.spec.name === name)}].data`,
  };
  if (!isNamed(signature)) return { instances: Array.from({ length: rows }, (_, i) => row(tensors[0]!, i)), root };
  const instances = Array.from({ length: rows }, (_, i) =>
    Object.fromEntries(tensors.map((t) => [t.spec.name, row(t, i)])),
  );
  return { instances, root };
}

/**
 * Checks that every output the request asks for (`[{name}]`) is one of the signature's. None asked for (no
 * `outputs`, or an empty list, which gRPC cannot tell from none) is every output, as the protocol says.
 */
function checkRequestedOutputs(raw: unknown, signature: Signature): void {
  if (raw === undefined || raw === null) return;
  const known = outputSpecs(signature).map((spec) => spec.name);
  if (!Array.isArray(raw) || raw.length > MAX_NAMED_TENSORS) {
    throw bad(`expected at most ${MAX_NAMED_TENSORS} outputs`, 'outputs');
  }
  raw.forEach((entry, j) => {
    const name = isObject(entry) ? entry.name : undefined;
    if (typeof name !== 'string' || !known.includes(name)) {
      throw bad(`expected {name} with one of ${known.join(', ')}`, `outputs[${j}].name`);
    }
  });
}

/** What predict reads an inference request's tensors from (and hashes for its Idempotency-Key). */
interface TensorRequest {
  inputs: unknown;
  outputs: unknown;
}

function optionalString(value: unknown, field: string, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw bad(`expected a string of 1 to ${max} characters`, field);
  }
  return value;
}

/**
 * The answer's tensors, [n, size] FP32, one per output (those asked for): a model of named outputs answers
 * each by name, a single-output model as SINGLE_OUTPUT_NAME. Read from the prediction itself, so that a retry
 * answered from its Idempotency-Key is told as the first call was.
 */
function responseTensors(prediction: Prediction, requested: unknown): ResponseTensor[] {
  const { outputs } = prediction;
  // Checked against the signature before the call ran (a replay's request is the one checked first).
  const wanted =
    Array.isArray(requested) && requested.length > 0
      ? new Set(requested.map((entry: { name: string }) => entry.name))
      : null;
  const parts = outputs[0]!.named ?? [{ name: SINGLE_OUTPUT_NAME, values: outputs[0]!.values }];
  return parts.flatMap(({ name, values: { length: width } }, j) => {
    if (wanted && !wanted.has(name)) return [];
    const data = new Array<number>(outputs.length * width);
    outputs.forEach((output, i) => {
      const values = output.named ? output.named[j]!.values : output.values;
      for (let k = 0; k < width; k++) data[i * width + k] = values[k]!;
    });
    return [{ name, datatype: 'FP32' as const, shape: [outputs.length, width], data }];
  });
}

export class OpenInference {
  constructor(
    private readonly catalog: ServingCatalog,
    private readonly models: ModelsService,
    private readonly predictions: PredictService,
    private readonly limits: InferenceLimits,
  ) {}

  /** The version the caller is served for `ref` (as predict serves it), of a model the caller may see. */
  async #target(actor: Actor, name: string, ref: string | undefined) {
    assertStorableRefs({ name, version: ref });
    return this.catalog.servedFor(actor, { model: name, version: ref }, 'PREDICT');
  }

  async metadata(actor: Actor, name: string, ref: string | undefined): Promise<ModelMetadata> {
    const { model, served } = await this.#target(actor, name, ref);
    const versions = await this.models.versions(model.id);
    return {
      name: model.slug,
      versions: versions.filter((v) => v.status !== 'ARCHIVED').map((v) => v.version),
      platform: PLATFORM,
      inputs: inputSpecs(served.signature).map(inputMetadata),
      outputs: outputMetadata(served.signature),
    };
  }

  /** Ready when the version resolves and still serves (not archived). */
  async ready(actor: Actor, name: string, ref: string | undefined): Promise<{ name: string; ready: boolean }> {
    const { model, served } = await this.#target(actor, name, ref);
    return { name: model.slug, ready: served.version.status !== 'ARCHIVED' };
  }

  /**
   * Runs an inference request through PredictService. `idempotencyKey` (the Idempotency-Key header) is
   * predict's requestId: a retry with the same key and request is answered from the first call and not billed
   * again. The request's `id` is only echoed back (the prediction's id when it has none).
   */
  async infer(
    actor: Actor,
    name: string,
    ref: string | undefined,
    body: unknown,
    idempotencyKey: string | null,
  ): Promise<InferenceResponse> {
    if (!isObject(body)) throw bad('expected an inference request object {inputs: [...]}', 'body');
    const id = optionalString(body.id, 'id', MAX_ID_LENGTH);
    const parameters = body.parameters ?? {};
    if (!isObject(parameters)) throw bad('expected an object', 'parameters');
    const contractId = optionalString(parameters.contract_id, 'parameters.contract_id', 64);
    assertStorableRefs({ name, version: ref, 'parameters.contract_id': contractId });
    const request: TensorRequest = { inputs: body.inputs, outputs: body.outputs };
    const { prediction, warnings } = await this.predictions.predict(actor, {
      model: name,
      // Absent: predict serves a licensee its contract's pinned version, `latest` to everyone else.
      version: ref,
      inputs: request,
      readInputs: (signature, raw) => {
        const { inputs, outputs } = raw as TensorRequest;
        checkRequestedOutputs(outputs, signature);
        return instancesOf(inputs, signature, this.limits);
      },
      requestId: idempotencyKey,
      contractId,
    });
    return {
      model_name: name,
      model_version: prediction.modelVersion.version,
      id: id ?? prediction.id,
      parameters: {
        prediction_id: prediction.id,
        ...(prediction.contractId ? { contract_id: prediction.contractId } : {}),
        ...(warnings.length ? { warnings } : {}),
      },
      outputs: responseTensors(prediction, body.outputs),
    };
  }
}
