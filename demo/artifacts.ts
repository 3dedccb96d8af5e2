// Writes a trained model the way tf.io.fileSystem / tf.io.http lay it out (model.json + one weights file
// named in its manifest), with card.json (everything needed to publish it) and eval.json (its held-out
// examples), and reads the saved model back.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { EvalSetFile } from '../src/evaluation/eval-set.js';
import type { ClassificationMetrics } from '../src/evaluation/metrics.js';
import type { ImagePreprocessing } from '../src/preprocessing/image.js';
import type { TextPreprocessing } from '../src/preprocessing/text.js';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'model.weights.bin';
export const CARD_FILE = 'card.json';
export const EVAL_FILE = 'eval.json';

/** What a demo model is published with; field names follow the marketplace's publish inputs. */
export interface DemoModelCard {
  name: string;
  /** Suggested model slug. */
  slug: string;
  description: string;
  task: 'IMAGE_CLASSIFICATION' | 'TEXT_CLASSIFICATION';
  tags: string[];
  labels: string[];
  signature: {
    input: { shape: number[]; dtype: 'float32' | 'int32'; preprocessing: ImagePreprocessing | TextPreprocessing };
    output: { kind: 'classification'; labels: string[] };
  };
  /** On the whole held-out split; `dataset` says which. */
  metrics: ClassificationMetrics & { dataset: string };
  card: { intendedUse: string; trainingData: string; limitations: string };
  /** How the artifact was made, for reproduction. */
  training: {
    seed: number;
    backend: string;
    epochs: number;
    batchSize: number;
    optimizer: string;
    trainSamples: number;
    testSamples: number;
    parameters: number;
    weightsSha256: string;
  };
}

export interface SavedFile {
  file: string;
  bytes: number;
}

/** Replaces `dir` with model.json and model.weights.bin; returns the weights' SHA-256. */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let weightsSha256 = '';
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      if (!artifacts.modelTopology || !artifacts.weightSpecs || !artifacts.weightData) {
        throw new Error('tfjs produced model artifacts without topology or weights');
      }
      const weights = Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs }],
      };
      await writeFile(path.join(dir, MODEL_FILE), JSON.stringify(modelJson));
      await writeFile(path.join(dir, WEIGHTS_FILE), weights);
      weightsSha256 = createHash('sha256').update(weights).digest('hex');
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  return weightsSha256;
}

/** Loads model.json + model.weights.bin from `dir`, as a server would. */
export async function loadSavedModel(dir: string): Promise<tf.LayersModel> {
  const modelJson = JSON.parse(await readFile(path.join(dir, MODEL_FILE), 'utf8')) as tf.io.ModelJSON;
  const weights = await readFile(path.join(dir, WEIGHTS_FILE));
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength);
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: modelJson.modelTopology, weightSpecs, weightData }));
}

/** Writes card.json and eval.json next to the model; returns the sizes of all four files. */
export async function saveCardAndEvalSet(dir: string, card: DemoModelCard, evalSet: EvalSetFile): Promise<SavedFile[]> {
  await writeFile(path.join(dir, CARD_FILE), `${JSON.stringify(card, null, 2)}\n`);
  await writeFile(path.join(dir, EVAL_FILE), JSON.stringify(evalSet));
  return Promise.all(
    [MODEL_FILE, WEIGHTS_FILE, CARD_FILE, EVAL_FILE].map(async (file) => ({
      file,
      bytes: (await stat(path.join(dir, file))).size,
    })),
  );
}
