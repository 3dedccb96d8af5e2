// Turns the model's output tensors into one answer per instance: the raw vector, and for classifiers the
// best label and the top-K labels; a model of named outputs answers each output by name.
import type { TensorOutput } from '../inference/engine.js';
import {
  outputSizeOf,
  specSize,
  type NamedSignature,
  type OutputSpec,
  type SingleSignature,
} from '../models/signature.js';
import { ModelError } from '../server/errors.js';

export interface LabelScore {
  label: string;
  score: number;
}

/** One named output of one instance. */
export interface NamedOutput {
  name: string;
  label: string | null;
  score: number | null;
  top: LabelScore[] | null;
  values: number[];
}

export interface PredictionOutput {
  label: string | null;
  score: number | null;
  top: LabelScore[] | null;
  /** A model of named outputs: all of them, in the signature's order. */
  values: number[];
  /** A model of named outputs: each of them (absent for single-output models). */
  named?: NamedOutput[];
}

/**
 * Throws ModelError when the model returned another width than its signature declares (checked from the shape
 * alone, before any value is read: a graph whose ops size themselves from constants can return millions of
 * values per instance, which decoding would walk on the main thread), or produced NaN or Infinity, which JSON
 * (and GraphQL's Float) cannot carry.
 */
export function checkedWidth(output: TensorOutput, declared: number): number {
  const [, ...rest] = output.shape;
  const width = rest.reduce((a, b) => a * b, 1);
  if (width !== declared) {
    throw new ModelError(
      `The model returned ${width} values per instance; its signature declares ${declared}; this call is not billed`,
    );
  }
  const { data } = output;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new ModelError(
        `The model produced a non-finite value (${data[i]}) for instance ${Math.floor(i / width)}; this call is not billed`,
      );
    }
  }
  return width;
}

/** One instance's answer for one output: its values, and for a classifier its best and top-K labels. */
function answer(spec: OutputSpec, values: number[], topK: number): PredictionOutput {
  if (spec.kind !== 'classification') return { label: null, score: null, top: null, values };
  const { labels } = spec;
  const ranked = values
    .map((score, index) => ({ label: labels[index]!, score }))
    .sort((a, b) => b.score - a.score)
    .slice(0, Math.max(1, topK));
  return { label: ranked[0]!.label, score: ranked[0]!.score, top: ranked, values };
}

export function decodeOutputs(signature: SingleSignature, output: TensorOutput, topK: number): PredictionOutput[] {
  const width = checkedWidth(output, outputSizeOf(signature));
  const [instances = 0] = output.shape;
  const answers: PredictionOutput[] = [];
  for (let i = 0; i < instances; i++) {
    const values = Array.from(output.data.subarray(i * width, (i + 1) * width));
    answers.push(answer(signature.output, values, topK));
  }
  return answers;
}

/** One answer per instance, each output named; `values` holds every output's values in order. */
export function decodeNamedOutputs(
  signature: NamedSignature,
  outputs: TensorOutput[],
  topK: number,
): PredictionOutput[] {
  const widths = signature.outputs.map((spec, j) => checkedWidth(outputs[j]!, specSize(spec)));
  const [instances = 0] = outputs[0]?.shape ?? [];
  const answers: PredictionOutput[] = [];
  for (let i = 0; i < instances; i++) {
    const named = signature.outputs.map((spec, j): NamedOutput => {
      const width = widths[j]!;
      const values = Array.from(outputs[j]!.data.subarray(i * width, (i + 1) * width));
      return { name: spec.name, ...answer(spec, values, topK) };
    });
    answers.push({ label: null, score: null, top: null, values: named.flatMap((n) => n.values), named });
  }
  return answers;
}
