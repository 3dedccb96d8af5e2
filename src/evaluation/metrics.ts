// Classification metrics from true and predicted class indices. Pure functions with JSON-serialisable
// results, so a report can be stored as-is (model cards, evaluation records).
//
// Conventions for degenerate classes (the sklearn `zero_division=0` choice, so results never hold NaN):
// - a class that is never predicted has precision 0;
// - a class with no true samples (support 0) has recall 0;
// - F1 is 0 when precision + recall is 0.
// Macro-F1 is the unweighted mean of F1 over all `numClasses` classes, including classes with support 0.

export interface ClassMetrics {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  /** Number of samples whose true class is this one. */
  support: number;
}

export interface ClassificationMetrics {
  accuracy: number;
  macroF1: number;
  perClass: ClassMetrics[];
  /** `confusionMatrix[trueClass][predictedClass]` = number of samples. */
  confusionMatrix: number[][];
  labels: string[];
  samples: number;
}

function assertClassIndices(name: string, values: readonly number[], numClasses: number): void {
  values.forEach((value, i) => {
    if (!Number.isInteger(value) || value < 0 || value >= numClasses) {
      throw new RangeError(`${name}[${i}] = ${value} is not a class index in [0, ${numClasses})`);
    }
  });
}

function assertSamePairs(yTrue: readonly number[], yPred: readonly number[]): void {
  if (yTrue.length !== yPred.length) {
    throw new RangeError(`yTrue has ${yTrue.length} samples but yPred has ${yPred.length}`);
  }
  if (yTrue.length === 0) throw new RangeError('metrics need at least one sample');
}

/** Fraction of samples whose prediction equals the true class. */
export function accuracy(yTrue: readonly number[], yPred: readonly number[]): number {
  assertSamePairs(yTrue, yPred);
  let correct = 0;
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) correct++;
  return correct / yTrue.length;
}

/** Counts per (true class, predicted class): rows are true classes, columns predicted classes. */
export function confusionMatrix(yTrue: readonly number[], yPred: readonly number[], numClasses: number): number[][] {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`numClasses must be a positive integer`);
  assertSamePairs(yTrue, yPred);
  assertClassIndices('yTrue', yTrue, numClasses);
  assertClassIndices('yPred', yPred, numClasses);
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) matrix[yTrue[i]!]![yPred[i]!]!++;
  return matrix;
}

/** Precision, recall, F1 and support of every class, read off a confusion matrix. */
export function perClassMetrics(matrix: readonly (readonly number[])[], labels: readonly string[]): ClassMetrics[] {
  const numClasses = matrix.length;
  if (labels.length !== numClasses) throw new RangeError(`${labels.length} labels for ${numClasses} classes`);
  return labels.map((label, c) => {
    const truePositives = matrix[c]![c]!;
    const support = matrix[c]!.reduce((sum, n) => sum + n, 0);
    const predicted = matrix.reduce((sum, row) => sum + row[c]!, 0);
    const precision = predicted === 0 ? 0 : truePositives / predicted;
    const recall = support === 0 ? 0 : truePositives / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { label, precision, recall, f1, support };
  });
}

/** Unweighted mean F1 over all classes. */
export function macroF1(perClass: readonly ClassMetrics[]): number {
  if (perClass.length === 0) throw new RangeError('macro-F1 needs at least one class');
  return perClass.reduce((sum, c) => sum + c.f1, 0) / perClass.length;
}

/**
 * The full report. `labels` name the classes by index and default to "0", "1", ….
 */
export function classificationMetrics(
  yTrue: readonly number[],
  yPred: readonly number[],
  numClasses: number,
  labels: readonly string[] = Array.from({ length: numClasses }, (_, i) => String(i)),
): ClassificationMetrics {
  if (labels.length !== numClasses) throw new RangeError(`${labels.length} labels for ${numClasses} classes`);
  const matrix = confusionMatrix(yTrue, yPred, numClasses);
  const perClass = perClassMetrics(matrix, labels);
  return {
    accuracy: accuracy(yTrue, yPred),
    macroF1: macroF1(perClass),
    perClass,
    confusionMatrix: matrix,
    labels: [...labels],
    samples: yTrue.length,
  };
}

/**
 * The predicted class of each row of a row-major [rows, numClasses] score matrix (probabilities or
 * logits). Ties go to the lowest class index, as with tf.argMax.
 */
export function argmaxRows(scores: ArrayLike<number>, numClasses: number): number[] {
  if (!Number.isInteger(numClasses) || numClasses < 1 || scores.length % numClasses !== 0) {
    throw new RangeError(`${scores.length} scores do not form rows of ${numClasses} classes`);
  }
  const predicted: number[] = [];
  for (let row = 0; row < scores.length; row += numClasses) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (scores[row + c]! > scores[row + best]!) best = c;
    predicted.push(best);
  }
  return predicted;
}
