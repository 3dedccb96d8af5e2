// A version's signature: what its input looks like (shape without the batch dimension, dtype, and how raw
// inputs are turned into that tensor) and what its output means. Inferred from the artifact when the owner
// gives none; an explicit one adds preprocessing and must agree with the model.
import { z } from 'zod';
import { BadUserInputError } from '../server/errors.js';
import type { ModelSignature as InspectedModel } from '../inference/engine.js';

const positiveInt = z.number().int().positive();
const label = z.string().min(1).max(200);

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
      vocabulary: z
        .array(z.string())
        .min(2)
        .max(500_000)
        .refine((v) => new Set(v).size === v.length, 'vocabulary tokens must be distinct'),
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

export const signatureSchema = z
  .object({
    input: z
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
      .strict(),
    output: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('classification'), labels: z.array(label).min(2).max(100_000) }).strict(),
      z.object({ kind: z.literal('values'), size: positiveInt }).strict(),
    ]),
  })
  .strict();

export type Signature = z.infer<typeof signatureSchema>;
export type Preprocessing = Signature['input']['preprocessing'];

const FIELD = 'input.signature';

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Parses a stored or submitted signature; throws BAD_USER_INPUT naming the problem. */
export function parseSignature(raw: unknown, field = FIELD): Signature {
  const parsed = signatureSchema.safeParse(raw);
  if (!parsed.success) throw new BadUserInputError(`Invalid signature: ${describeIssues(parsed.error)}`, field);
  return parsed.data;
}

/** The model's own input and output, as loaded by tfjs (single input, single output). */
function modelFacts(model: InspectedModel): { shape: (number | null)[]; dtype: string; outputSize: number | null } {
  const [input] = model.inputs;
  const [output] = model.outputs;
  if (!input || !output || model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new BadUserInputError('Only models with one input and one output can be published', 'input.artifactId');
  }
  const outputShape = output.shape.slice(1);
  const outputSize = outputShape.length === 1 ? outputShape[0]! : null;
  return { shape: input.shape.slice(1), dtype: input.dtype, outputSize };
}

export interface PublishFacts {
  /** PREDICT_MAX_OUTPUT_VALUES: one instance's output must fit in a call's budget. */
  maxOutputValues: number;
}

/**
 * The signature a version is published with: the explicit one checked against the model, or one inferred
 * from the model and the labels.
 */
export function resolveSignature(
  model: InspectedModel,
  explicit: unknown,
  labels: string[] | undefined,
  facts: PublishFacts,
): Signature {
  const signature = checkedSignature(model, explicit, labels);
  const outputSize = outputSizeOf(signature);
  if (outputSize > facts.maxOutputValues) {
    throw new BadUserInputError(
      `The model outputs ${outputSize} values per instance; at most ${facts.maxOutputValues} are served per call`,
      'input.artifactId',
    );
  }
  const { embeddingInputDim } = model;
  if (embeddingInputDim === null) return signature;
  const { preprocessing } = signature.input;
  if (preprocessing.kind === 'text' && preprocessing.vocabulary.length > embeddingInputDim) {
    throw new BadUserInputError(
      `The vocabulary has ${preprocessing.vocabulary.length} tokens but the model's Embedding takes ids below ${embeddingInputDim}`,
      FIELD,
    );
  }
  return { ...signature, input: { ...signature.input, embeddingInputDim } };
}

/** Values per instance in the model's output. */
export function outputSizeOf(signature: Signature): number {
  return signature.output.kind === 'classification' ? signature.output.labels.length : signature.output.size;
}

function checkedSignature(model: InspectedModel, explicit: unknown, labels: string[] | undefined): Signature {
  const facts = modelFacts(model);
  if (facts.outputSize === null) {
    throw new BadUserInputError('The model must output one vector per instance (shape [batch, n])', 'input.artifactId');
  }
  if (labels && labels.length !== facts.outputSize) {
    throw new BadUserInputError(
      `The model has ${facts.outputSize} outputs but ${labels.length} labels were given`,
      'input.labels',
    );
  }
  if (explicit === undefined || explicit === null) {
    if (facts.shape.some((d) => d === null)) {
      throw new BadUserInputError(
        `The model's input shape [${facts.shape.map((d) => d ?? '?').join(', ')}] has unknown dimensions; give a signature`,
        FIELD,
      );
    }
    const dtype = facts.dtype === 'int32' ? 'int32' : 'float32';
    return parseSignature({
      input: { shape: facts.shape, dtype, preprocessing: { kind: 'none' } },
      output: labels ? { kind: 'classification', labels } : { kind: 'values', size: facts.outputSize },
    });
  }

  const signature = parseSignature(explicit);
  const { shape, dtype, preprocessing } = signature.input;
  const agrees =
    shape.length === facts.shape.length && shape.every((d, i) => facts.shape[i] === null || facts.shape[i] === d);
  if (!agrees) {
    throw new BadUserInputError(
      `Signature input shape [${shape.join(', ')}] disagrees with the model's [${facts.shape.map((d) => d ?? '?').join(', ')}]`,
      FIELD,
    );
  }
  if (dtype !== facts.dtype) {
    throw new BadUserInputError(`Signature dtype ${dtype} disagrees with the model's ${facts.dtype}`, FIELD);
  }
  assertPreprocessingFits(preprocessing, shape);
  const outputSize = outputSizeOf(signature);
  if (outputSize !== facts.outputSize) {
    throw new BadUserInputError(
      `Signature output size ${outputSize} disagrees with the model's ${facts.outputSize}`,
      FIELD,
    );
  }
  if (
    labels &&
    signature.output.kind === 'classification' &&
    labels.join('\n') !== signature.output.labels.join('\n')
  ) {
    throw new BadUserInputError("labels disagree with the signature's labels", 'input.labels');
  }
  return signature;
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
