// The steps every demo model shares after its data is ready: train, score on the held-out split, save,
// reload the saved files and score them on the stored eval set (which must reproduce the in-memory
// predictions), then write card.json and eval.json.
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { decodeEvalSet, encodeEvalSet, type EvalSetSource } from '../src/evaluation/eval-set.js';
import { classificationMetrics, type ClassificationMetrics } from '../src/evaluation/metrics.js';
import { loadSavedModel, saveCardAndEvalSet, saveModel, type DemoModelCard, type SavedFile } from './artifacts.js';
import type { Random } from './random.js';
import { OPTIMIZER } from './models.js';
import { fitClassifier, predictClasses } from './training.js';

/** Leading held-out examples stored in eval.json, unless the model asks for more (see DemoModelJob). */
export const EVAL_SET_SIZE = 500;
/** Raw examples (PNG / text) stored in eval.json. */
export const RAW_EXAMPLES = 5;

export interface RunContext {
  seed: number;
  backend: string;
  /** Parent folder of the artifact folders. */
  outDir: string;
}

export interface ModelReport {
  slug: string;
  dir: string;
  trainingSeconds: number;
  metrics: ClassificationMetrics;
  evalSetAccuracy: number;
  files: SavedFile[];
  weightsSha256: string;
}

export interface DemoModelJob {
  model: tf.LayersModel;
  xTrain: tf.Tensor;
  trainLabels: number[];
  /** The whole held-out split; its first `evalExamples` examples become eval.json. */
  xTest: tf.Tensor;
  evalExamples: number;
  testLabels: number[];
  labels: string[];
  epochs: number;
  batchSize: number;
  random: Random;
  /** Everything in card.json that does not come from training. */
  card: Omit<DemoModelCard, 'labels' | 'metrics' | 'training'>;
  /** Describes the held-out split for the metrics. */
  dataset: string;
  /** The stored form of the eval set's inputs; `values` covers exactly its examples. */
  evalInputs: Pick<EvalSetSource, 'values' | 'storedAs' | 'divideBy' | 'examples'>;
}

function sameClasses(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

export async function trainAndPublish(job: DemoModelJob, context: RunContext): Promise<ModelReport> {
  const { model, labels, card } = job;
  const dir = path.join(context.outDir, card.slug);

  const trainingStarted = performance.now();
  await fitClassifier(model, job.xTrain, job.trainLabels, {
    name: card.slug,
    epochs: job.epochs,
    batchSize: job.batchSize,
    random: job.random,
  });
  const trainingSeconds = (performance.now() - trainingStarted) / 1000;

  const predicted = await predictClasses(model, job.xTest);
  const metrics = classificationMetrics(job.testLabels, predicted, labels.length, labels);
  const weightsSha256 = await saveModel(model, dir);

  const evalCount = Math.min(job.evalExamples, job.testLabels.length);
  const evalTargets = job.testLabels.slice(0, evalCount);
  const evalFile = encodeEvalSet({
    dataset: `${job.dataset}; its first ${evalCount} examples`,
    labels,
    shape: job.xTest.shape.slice(1),
    dtype: job.xTest.dtype === 'int32' ? 'int32' : 'float32',
    targets: evalTargets,
    ...job.evalInputs,
  });
  // Scored through the saved files and the decoded eval set, exactly as the server will see them.
  const evalSet = decodeEvalSet(evalFile);
  const reloaded = await loadSavedModel(dir);
  const evalX = tf.tensor(evalSet.inputs, [evalSet.count, ...evalSet.shape], evalSet.dtype);
  const reloadedPredictions = await predictClasses(reloaded, evalX);
  evalX.dispose();
  reloaded.dispose();
  if (!sameClasses(reloadedPredictions, predicted.slice(0, evalCount))) {
    throw new Error(`${card.slug}: the saved model or eval set does not reproduce the trained model's predictions`);
  }
  const evalMetrics = classificationMetrics(evalTargets, reloadedPredictions, labels.length, labels);
  evalFile.baseline = { accuracy: evalMetrics.accuracy, macroF1: evalMetrics.macroF1 };

  const files = await saveCardAndEvalSet(
    dir,
    {
      ...card,
      labels,
      metrics: { dataset: job.dataset, ...metrics },
      training: {
        seed: context.seed,
        backend: context.backend,
        epochs: job.epochs,
        batchSize: job.batchSize,
        optimizer: OPTIMIZER,
        trainSamples: job.trainLabels.length,
        testSamples: job.testLabels.length,
        parameters: model.countParams(),
        weightsSha256,
      },
    },
    evalFile,
  );
  return {
    slug: card.slug,
    dir,
    trainingSeconds,
    metrics,
    evalSetAccuracy: evalMetrics.accuracy,
    files,
    weightsSha256,
  };
}
