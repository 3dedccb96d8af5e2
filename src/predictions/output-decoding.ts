// Turns the model's output tensor into one answer per instance: the raw vector, and for classifiers the
// best label and the top-K labels.
import type { TensorOutput } from '../inference/engine.js';
import type { Signature } from '../models/signature.js';
import { ModelError } from '../server/errors.js';

export interface LabelScore {
  label: string;
  score: number;
}

export interface PredictionOutput {
  label: string | null;
  score: number | null;
  top: LabelScore[] | null;
  values: number[];
}

/** Throws ModelError when the model produced NaN or Infinity, which JSON (and GraphQL's Float) cannot carry. */
export function decodeOutputs(signature: Signature, output: TensorOutput, topK: number): PredictionOutput[] {
  const [instances = 0, ...rest] = output.shape;
  const width = rest.reduce((a, b) => a * b, 1);
  const { data } = output;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new ModelError(
        `The model produced a non-finite value (${data[i]}) for instance ${Math.floor(i / width)}; this call is not billed`,
      );
    }
  }
  const answers: PredictionOutput[] = [];
  for (let i = 0; i < instances; i++) {
    const values = Array.from(output.data.subarray(i * width, (i + 1) * width));
    if (signature.output.kind !== 'classification') {
      answers.push({ label: null, score: null, top: null, values });
      continue;
    }
    const { labels } = signature.output;
    const ranked = values
      .map((score, index) => ({ label: labels[index]!, score }))
      .sort((a, b) => b.score - a.score)
      .slice(0, Math.max(1, topK));
    answers.push({ label: ranked[0]!.label, score: ranked[0]!.score, top: ranked, values });
  }
  return answers;
}
