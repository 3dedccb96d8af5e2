// Evaluation metrics an owner states for a version, checked for internal consistency so a model card
// cannot claim what its own numbers contradict.
import { z } from 'zod';
import { BadUserInputError } from '../server/errors.js';

const unit = z.number().min(0).max(1);

const metricsSchema = z
  .object({
    dataset: z.string().trim().min(1).max(500),
    samples: z.number().int().positive(),
    accuracy: unit.nullish(),
    macroF1: unit.nullish(),
    perClass: z
      .array(
        z.object({
          label: z.string().min(1),
          precision: unit,
          recall: unit,
          f1: unit,
          support: z.number().int().min(0),
        }),
      )
      .nullish(),
    confusionMatrix: z.array(z.array(z.number().int().min(0))).nullish(),
    labels: z.array(z.string().min(1)).nullish(),
    mae: z.number().min(0).nullish(),
    rmse: z.number().min(0).nullish(),
  })
  .strict();

export type EvaluationMetrics = z.infer<typeof metricsSchema>;

const FIELD = 'input.metrics';

/** Validates metrics against the version's labels (empty for non-classifiers); drops null fields. */
export function parseEvaluationMetrics(raw: unknown, versionLabels: string[]): EvaluationMetrics {
  const parsed = metricsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BadUserInputError(`Invalid metrics: ${issue.path.join('.')}: ${issue.message}`, FIELD);
  }
  const metrics = Object.fromEntries(
    Object.entries(parsed.data).filter(([, v]) => v !== null && v !== undefined),
  ) as EvaluationMetrics;
  const labels = metrics.labels ?? versionLabels;
  if (metrics.labels && versionLabels.length && metrics.labels.join('\n') !== versionLabels.join('\n')) {
    throw new BadUserInputError("metrics.labels must equal the version's labels, in order", `${FIELD}.labels`);
  }
  if (metrics.confusionMatrix) {
    const n = labels.length;
    const square = metrics.confusionMatrix.length === n && metrics.confusionMatrix.every((row) => row.length === n);
    if (!square)
      throw new BadUserInputError(
        `confusionMatrix must be ${n}×${n} (one row and column per label)`,
        `${FIELD}.confusionMatrix`,
      );
    const total = metrics.confusionMatrix.flat().reduce((a, b) => a + b, 0);
    if (total !== metrics.samples) {
      throw new BadUserInputError(
        `confusionMatrix counts ${total} samples, not ${metrics.samples}`,
        `${FIELD}.confusionMatrix`,
      );
    }
  }
  if (metrics.perClass) {
    const unknown = metrics.perClass.find((c) => !labels.includes(c.label));
    if (unknown) throw new BadUserInputError(`perClass names unknown label "${unknown.label}"`, `${FIELD}.perClass`);
  }
  return { ...metrics, labels: labels.length ? labels : undefined };
}
