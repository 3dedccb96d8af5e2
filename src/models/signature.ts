// A version's signature: what its input looks like (shape without the batch dimension, dtype, and how raw
// inputs are turned into that tensor) and what its output means; a model of several inputs or outputs has the
// named form, each tensor named as the model's layer is. Inferred from the artifact when the owner
// gives none; an explicit one adds preprocessing and must agree with the model.
import { z } from 'zod';
import { BadUserInputError } from '../server/errors.js';
import type { ModelSignature as InspectedModel } from '../inference/engine.js';
import type {
  ModelSignature as TypedSignature,
  Preprocessing as TypedPreprocessing,
  TensorOutput,
} from '../generated/graphql.js';

const positiveInt = z.number().int().positive();
const label = z.string().min(1).max(200);

const classificationSchema = z
  .object({ kind: z.literal('classification'), labels: z.array(label).min(2).max(100_000) })
  .strict();
const valuesSchema = z.object({ kind: z.literal('values'), size: positiveInt }).strict();
const outputSchema = z.discriminatedUnion('kind', [classificationSchema, valuesSchema]);

/** Names clients write as object keys, OIP tensor names and GraphQL strings: short, plain. */
const tensorName = z.string().regex(/^[A-Za-z_][\w.-]{0,63}$/, 'a name of 1 to 64 letters, digits, _ . -');
/** tfjs graphs of a few named tensors; a bound so that one call's instances stay cheap to check. */
export const MAX_NAMED_TENSORS = 16;
const distinctNames = (tensors: { name: string }[]) => new Set(tensors.map((t) => t.name)).size === tensors.length;

/**
 * The schemas of both forms, with the text vocabulary's own check given: in full for what a client submits, by
 * its form only for what was stored (checked in full at publish), so that reading a signature back does not
 * cost a pass over up to 500 000 tokens.
 */
function signatureSchemas(vocabulary: z.ZodType<string[]>) {
  const preprocessingSchema = z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('none') }).strict(),
    z
      .object({
        kind: z.literal('image'),
        height: positiveInt.max(4096),
        width: positiveInt.max(4096),
        channels: z.union([z.literal(1), z.literal(3), z.literal(4)]),
        /** `unit`: pixel / 255; `none`: raw 0..255. */
        scaling: z.enum(['unit', 'none']),
        /**
         * An image of another size: `stretch` resizes it (aspect ratio not kept), `refuse` refuses it. Absent
         * (signatures stored before it existed too): stretched, with a warning to the caller.
         */
        resize: z.enum(['stretch', 'refuse']).optional(),
        /** Smaller source images are refused rather than blown up. */
        minSourceSize: z
          .object({ height: positiveInt.max(65_535), width: positiveInt.max(65_535) })
          .strict()
          .optional(),
      })
      .strict(),
    z
      .object({
        kind: z.literal('text'),
        /** Token id = index; 0 is padding, 1 out-of-vocabulary. */
        vocabulary,
        maxLength: positiveInt.max(100_000),
        lowercase: z.boolean(),
      })
      .strict(),
    z
      .object({
        kind: z.literal('tabular'),
        /** Standardisation per feature: (x − mean) / std. */
        features: z
          .array(
            z
              .object({
                name: z.string().min(1).max(200),
                mean: z.number().default(0),
                std: z.number().positive().default(1),
              })
              .strict(),
          )
          .min(1)
          .max(10_000),
      })
      .strict(),
  ]);

  const inputSchema = z
    .object({
      shape: z.array(positiveInt).min(1).max(4),
      dtype: z.enum(['float32', 'int32']),
      preprocessing: preprocessingSchema.default({ kind: 'none' }),
      /**
       * Set at publish when the input feeds an Embedding layer of this many rows: every value must then be
       * an integer in [0, embeddingInputDim), checked per instance so that one caller's out-of-range id
       * never fails a merged batch. Absent in signatures stored before it existed.
       */
      embeddingInputDim: positiveInt.optional(),
      /**
       * The values numeric instances may hold (inclusive), enforced per value. Without it, a unit-scaled
       * image model's numbers far outside [0, 1] are accepted with a warning.
       */
      range: z
        .object({ min: z.number(), max: z.number() })
        .strict()
        .refine((r) => r.min <= r.max, 'min must not exceed max')
        .optional(),
    })
    .strict();

  /** The simple form: one input tensor, one output tensor (every signature stored before named tensors). */
  const singleSignatureSchema = z.object({ input: inputSchema, output: outputSchema }).strict();

  /** The named form: several inputs and outputs, each named, in the model's own order. */
  const namedSignatureSchema = z
    .object({
      inputs: z
        .array(inputSchema.extend({ name: tensorName }))
        .min(1)
        .max(MAX_NAMED_TENSORS)
        .refine(distinctNames, 'input names must be distinct'),
      outputs: z
        .array(
          z.discriminatedUnion('kind', [
            classificationSchema.extend({ name: tensorName }),
            valuesSchema.extend({ name: tensorName }),
          ]),
        )
        .min(1)
        .max(MAX_NAMED_TENSORS)
        .refine(distinctNames, 'output names must be distinct'),
    })
    .strict();
  return { single: singleSignatureSchema, named: namedSignatureSchema };
}

const submitted = signatureSchemas(
  z
    .array(z.string())
    .min(2)
    .max(500_000)
    .refine((v) => new Set(v).size === v.length, 'vocabulary tokens must be distinct'),
);
// An array at all: its tokens were checked at publish, and versions are immutable.
const stored = signatureSchemas(z.custom<string[]>((v) => Array.isArray(v)));

export type SingleSignature = z.infer<typeof submitted.single>;
export type NamedSignature = z.infer<typeof submitted.named>;
export type Signature = SingleSignature | NamedSignature;
export type InputSpec = SingleSignature['input'];
export type OutputSpec = SingleSignature['output'];
export type Preprocessing = InputSpec['preprocessing'];

/** The name a single-tensor signature's input and output go by where names are needed (OIP). */
export const SINGLE_INPUT_NAME = 'input';
export const SINGLE_OUTPUT_NAME = 'output';

export function isNamed(signature: Signature): signature is NamedSignature {
  return 'inputs' in signature;
}

/** Every input of a signature, named (a single-tensor signature's as SINGLE_INPUT_NAME). */
export function inputSpecs(signature: Signature): (InputSpec & { name: string })[] {
  return isNamed(signature) ? signature.inputs : [{ ...signature.input, name: SINGLE_INPUT_NAME }];
}

/** Every output of a signature, named (a single-tensor signature's as SINGLE_OUTPUT_NAME). */
export function outputSpecs(signature: Signature): (OutputSpec & { name: string })[] {
  return isNamed(signature) ? signature.outputs : [{ ...signature.output, name: SINGLE_OUTPUT_NAME }];
}

/**
 * The typed form the API answers (ModelVersion.io): every input and output named (a single-tensor signature's
 * as SINGLE_INPUT_NAME and SINGLE_OUTPUT_NAME), a text vocabulary by its size only (it can hold 500 000 tokens).
 */
export function typedSignature(signature: Signature): TypedSignature {
  return {
    named: isNamed(signature),
    inputs: inputSpecs(signature).map((input) => ({
      name: input.name,
      shape: input.shape,
      dtype: input.dtype === 'int32' ? 'INT32' : 'FLOAT32',
      preprocessing: typedPreprocessing(input.preprocessing),
      range: input.range ?? null,
    })),
    outputs: outputSpecs(signature).map((output): TensorOutput => ({
      name: output.name,
      kind: output.kind === 'classification' ? 'CLASSIFICATION' : 'VALUES',
      labels: output.kind === 'classification' ? output.labels : null,
      size: specSize(output),
    })),
  };
}

/** Each preprocessing with its GraphQL type name, which the Preprocessing union resolves by. */
function typedPreprocessing(preprocessing: Preprocessing): TypedPreprocessing & { __typename: string } {
  switch (preprocessing.kind) {
    case 'none':
      return { __typename: 'NoPreprocessing', none: true };
    case 'image':
      return {
        __typename: 'ImagePreprocessing',
        height: preprocessing.height,
        width: preprocessing.width,
        channels: preprocessing.channels,
        scaling: preprocessing.scaling === 'unit' ? 'UNIT' : 'NONE',
        // Signatures stored before `resize` existed are stretched (see the schema above).
        resize: preprocessing.resize === 'refuse' ? 'REFUSE' : 'STRETCH',
      };
    case 'text':
      return {
        __typename: 'TextPreprocessing',
        maxLength: preprocessing.maxLength,
        lowercase: preprocessing.lowercase,
        vocabularySize: preprocessing.vocabulary.length,
      };
    case 'tabular':
      return { __typename: 'TabularPreprocessing', features: preprocessing.features };
  }
}

const FIELD = 'input.signature';

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

function parseWith(schemas: typeof submitted, raw: unknown, field: string): Signature {
  // The form is chosen by its keys, so that a mistake is reported against the form meant.
  const named = raw !== null && typeof raw === 'object' && ('inputs' in raw || 'outputs' in raw);
  const parsed = (named ? schemas.named : schemas.single).safeParse(raw);
  if (!parsed.success) throw new BadUserInputError(`Invalid signature: ${describeIssues(parsed.error)}`, field);
  return parsed.data;
}

/** Parses a submitted signature; throws BAD_USER_INPUT naming the problem. */
export function parseSignature(raw: unknown, field = FIELD): Signature {
  return parseWith(submitted, raw, field);
}

/**
 * A version's stored signature, checked in full when it was published: its vocabulary's tokens are not walked
 * again, so reading it costs O(inputs + outputs + labels).
 */
export function storedSignature(raw: unknown): Signature {
  return parseWith(stored, raw, 'signature');
}

export interface PublishFacts {
  /** PREDICT_MAX_OUTPUT_VALUES: one instance's output must fit in a call's budget. */
  maxOutputValues: number;
}

type ModelInput = InspectedModel['inputs'][number];
type ModelOutput = InspectedModel['outputs'][number];

const describeShape = (shape: (number | null)[]) => `[${shape.map((d) => d ?? '?').join(', ')}]`;

/** Values per instance of a model output of shape [batch, n]; anything else is refused. */
function vectorSize(output: ModelOutput): number {
  const shape = output.shape.slice(1);
  if (shape.length !== 1 || shape[0] === null) {
    throw new BadUserInputError(
      `The model's output ${output.name} must be one vector per instance (shape [batch, n]), not ${describeShape(output.shape)}`,
      'input.artifactId',
    );
  }
  return shape[0]!;
}

/**
 * The signature a version is published with: the explicit one checked against the model, or one inferred
 * from the model and the labels. A model of one input and one output gets the single-tensor form unless the
 * owner gives the named one; a model of several gets the named form.
 */
export function resolveSignature(
  model: InspectedModel,
  explicit: unknown,
  labels: string[] | undefined,
  facts: PublishFacts,
): Signature {
  const single = model.inputs.length === 1 && model.outputs.length === 1;
  const given = explicit === undefined || explicit === null ? null : parseSignature(explicit);
  const signature =
    given === null
      ? single
        ? inferredSingle(model, labels)
        : inferredNamed(model, labels)
      : checked(model, given, labels);
  const outputSize = outputSizeOf(signature);
  if (outputSize > facts.maxOutputValues) {
    throw new BadUserInputError(
      `The model outputs ${outputSize} values per instance; at most ${facts.maxOutputValues} are served per call`,
      'input.artifactId',
    );
  }
  if (!isNamed(signature)) return { ...signature, input: withEmbedding(signature.input, model.inputs[0]!) };
  return { ...signature, inputs: signature.inputs.map((spec, i) => withEmbedding(spec, model.inputs[i]!)) };
}

/** The spec with the Embedding bound the model input feeds, checked against a text vocabulary. */
function withEmbedding<T extends InputSpec>(spec: T, input: ModelInput): T {
  const { embeddingInputDim } = input;
  if (input.rangeRequired && !spec.range) {
    throw new BadUserInputError(
      `The model's input ${input.name} is int32 in a graph model, whose ids nothing else bounds: give a signature whose input declares range {min, max}, checked per instance`,
      FIELD,
    );
  }
  if (embeddingInputDim === null) return spec;
  const { preprocessing } = spec;
  if (preprocessing.kind === 'text' && preprocessing.vocabulary.length > embeddingInputDim) {
    throw new BadUserInputError(
      `The vocabulary has ${preprocessing.vocabulary.length} tokens but the model's Embedding takes ids below ${embeddingInputDim}`,
      FIELD,
    );
  }
  return { ...spec, embeddingInputDim };
}

/** Values per instance in the model's output (all outputs together, for a named signature). */
export function outputSizeOf(signature: Signature): number {
  if (!isNamed(signature)) return specSize(signature.output);
  let size = 0;
  for (const output of signature.outputs) size += specSize(output);
  return size;
}

/** Values per instance of one output. */
export function specSize(output: OutputSpec): number {
  return output.kind === 'classification' ? output.labels.length : output.size;
}

function knownShape(input: ModelInput): number[] {
  const shape = input.shape.slice(1);
  if (shape.some((d) => d === null)) {
    throw new BadUserInputError(
      `The model's input ${input.name} has unknown dimensions ${describeShape(shape)}; give a signature`,
      FIELD,
    );
  }
  return shape as number[];
}

function inferredSingle(model: InspectedModel, labels: string[] | undefined): Signature {
  const [input] = model.inputs;
  const outputSize = vectorSize(model.outputs[0]!);
  if (labels && labels.length !== outputSize) {
    throw new BadUserInputError(
      `The model has ${outputSize} outputs but ${labels.length} labels were given`,
      'input.labels',
    );
  }
  return parseSignature({
    input: { shape: knownShape(input!), dtype: input!.dtype === 'int32' ? 'int32' : 'float32' },
    output: labels ? { kind: 'classification', labels } : { kind: 'values', size: outputSize },
  });
}

const NO_LABELS_FOR_NAMED = () =>
  new BadUserInputError(
    'labels apply to a model of one output; name each output\'s labels in the signature ({outputs: [{name, kind: "classification", labels}]})',
    'input.labels',
  );

function inferredNamed(model: InspectedModel, labels: string[] | undefined): Signature {
  if (labels) throw NO_LABELS_FOR_NAMED();
  return parseSignature({
    inputs: model.inputs.map((input) => ({
      name: input.name,
      shape: knownShape(input),
      dtype: input.dtype === 'int32' ? 'int32' : 'float32',
    })),
    outputs: model.outputs.map((output) => ({ name: output.name, kind: 'values', size: vectorSize(output) })),
  });
}

function checked(model: InspectedModel, signature: Signature, labels: string[] | undefined): Signature {
  if (!isNamed(signature)) {
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new BadUserInputError(
        `The model has ${model.inputs.length} inputs and ${model.outputs.length} outputs: give the signature in the named form {inputs: [{name, shape, dtype, preprocessing}], outputs: [{name, kind, …}]}`,
        FIELD,
      );
    }
    checkInput(signature.input, model.inputs[0]!);
    checkOutput(signature.output, model.outputs[0]!);
    const { output } = signature;
    if (labels && output.kind === 'classification' && labels.join('\n') !== output.labels.join('\n')) {
      throw new BadUserInputError("labels disagree with the signature's labels", 'input.labels');
    }
    return signature;
  }
  if (labels) throw NO_LABELS_FOR_NAMED();
  // Stored in the model's own order, which is the order the worker feeds and reads the tensors in.
  const inputs = model.inputs.map((input) => {
    const spec = signature.inputs.find((candidate) => candidate.name === input.name);
    if (!spec) throw namesDisagree('inputs', signature.inputs, model.inputs);
    checkInput(spec, input);
    return spec;
  });
  const outputs = model.outputs.map((output) => {
    const spec = signature.outputs.find((candidate) => candidate.name === output.name);
    if (!spec) throw namesDisagree('outputs', signature.outputs, model.outputs);
    checkOutput(spec, output);
    return spec;
  });
  if (inputs.length !== signature.inputs.length) throw namesDisagree('inputs', signature.inputs, model.inputs);
  if (outputs.length !== signature.outputs.length) throw namesDisagree('outputs', signature.outputs, model.outputs);
  return { inputs, outputs };
}

function namesDisagree(what: string, given: { name: string }[], model: { name: string }[]): BadUserInputError {
  const names = (list: { name: string }[]) => list.map((t) => t.name).join(', ');
  return new BadUserInputError(
    `Signature ${what} [${names(given)}] disagree with the model's [${names(model)}]`,
    FIELD,
  );
}

function checkInput(spec: InputSpec, input: ModelInput): void {
  const facts = input.shape.slice(1);
  const { shape, dtype, preprocessing } = spec;
  if (shape.length !== facts.length || !shape.every((d, i) => facts[i] === null || facts[i] === d)) {
    throw new BadUserInputError(
      `Signature input shape [${shape.join(', ')}] disagrees with the model's ${describeShape(facts)}`,
      FIELD,
    );
  }
  if (dtype !== input.dtype) {
    throw new BadUserInputError(`Signature dtype ${dtype} disagrees with the model's ${input.dtype}`, FIELD);
  }
  assertPreprocessingFits(preprocessing, shape);
}

function checkOutput(spec: OutputSpec, output: ModelOutput): void {
  const size = vectorSize(output);
  if (specSize(spec) !== size) {
    throw new BadUserInputError(`Signature output size ${specSize(spec)} disagrees with the model's ${size}`, FIELD);
  }
}

function assertPreprocessingFits(preprocessing: Preprocessing, shape: number[]): void {
  const mismatch = (expected: number[]) =>
    new BadUserInputError(
      `${preprocessing.kind} preprocessing produces [${expected.join(', ')}] but the input shape is [${shape.join(', ')}]`,
      FIELD,
    );
  if (preprocessing.kind === 'image') {
    const { height, width, channels } = preprocessing;
    const candidates = [[height, width, channels], ...(channels === 1 ? [[height, width], [height * width]] : [])];
    if (!candidates.some((c) => c.length === shape.length && c.every((d, i) => d === shape[i]))) {
      throw mismatch([height, width, channels]);
    }
  } else if (preprocessing.kind === 'text') {
    if (shape.length !== 1 || shape[0] !== preprocessing.maxLength) throw mismatch([preprocessing.maxLength]);
  } else if (preprocessing.kind === 'tabular') {
    if (shape.length !== 1 || shape[0] !== preprocessing.features.length)
      throw mismatch([preprocessing.features.length]);
  }
}

/** Whether a caller of one version can call another unchanged, and why not (consumer-accepted upgrades). */
export interface SignatureCompatibility {
  /** Inputs or outputs differ: a client written for `from` may fail or misread `to`. */
  breaking: boolean;
  /** One sentence per difference, in input then output order. */
  reasons: string[];
  /** An input was added, removed, or changed its shape, dtype or preprocessing. */
  inputsChanged: boolean;
  /** A classification output's labels differ (other labels, or the same in another order). */
  labelsChanged: boolean;
  /** An output was added or removed, or changed its kind or size (labels aside). */
  outputsChanged: boolean;
}

/** What a client of `from` notices when it is served `to` instead: same inputs and outputs, or the differences. */
export function compareSignatures(from: Signature, to: Signature): SignatureCompatibility {
  const reasons: string[] = [];
  const inputs = (s: Signature) => new Map(inputSpecs(s).map((spec) => [spec.name, spec]));
  const [fromInputs, toInputs] = [inputs(from), inputs(to)];
  for (const [name, spec] of fromInputs) {
    const next = toInputs.get(name);
    const what = !next
      ? 'was removed'
      : spec.dtype !== next.dtype
        ? `changed dtype from ${spec.dtype} to ${next.dtype}`
        : spec.shape.join(',') !== next.shape.join(',')
          ? `changed shape from [${spec.shape.join(', ')}] to [${next.shape.join(', ')}]`
          : JSON.stringify(spec.preprocessing) !== JSON.stringify(next.preprocessing)
            ? `changed its preprocessing${spec.preprocessing.kind === next.preprocessing.kind ? '' : ` from ${spec.preprocessing.kind} to ${next.preprocessing.kind}`}`
            : null;
    if (what) reasons.push(`input "${name}" ${what}`);
  }
  for (const name of toInputs.keys()) if (!fromInputs.has(name)) reasons.push(`input "${name}" was added`);
  const inputsChanged = reasons.length > 0;
  const outputs = (s: Signature) => new Map(outputSpecs(s).map((spec) => [spec.name, spec]));
  const [fromOutputs, toOutputs] = [outputs(from), outputs(to)];
  let labelsChanged = false;
  let outputsChanged = false;
  for (const [name, spec] of fromOutputs) {
    const next = toOutputs.get(name);
    if (!next || next.kind !== spec.kind || specSize(next) !== specSize(spec)) {
      outputsChanged = true;
      reasons.push(
        !next
          ? `output "${name}" was removed`
          : `output "${name}" changed from ${spec.kind} of ${specSize(spec)} to ${next.kind} of ${specSize(next)}`,
      );
    }
    if (
      next &&
      spec.kind === 'classification' &&
      next.kind === 'classification' &&
      spec.labels.join('\n') !== next.labels.join('\n')
    ) {
      labelsChanged = true;
      reasons.push(`output "${name}" changed its labels`);
    }
  }
  for (const name of toOutputs.keys()) {
    if (!fromOutputs.has(name)) {
      outputsChanged = true;
      reasons.push(`output "${name}" was added`);
    }
  }
  return { breaking: reasons.length > 0, reasons, inputsChanged, labelsChanged, outputsChanged };
}
