// Moving between stored artifacts (what the watermark library reads and writes) and live tfjs models
// (what is trained and scored).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { WeightsArtifact } from '../../src/watermark/index.js';

export async function readArtifact(dir: string): Promise<WeightsArtifact> {
  const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as unknown;
  return { modelJson, weights: new Uint8Array(await readFile(path.join(dir, 'model.weights.bin'))) };
}

/** Loads an artifact as tfjs would (quantized tensors are dequantized on load). */
export async function loadModel(artifact: WeightsArtifact): Promise<tf.LayersModel> {
  const modelJson = artifact.modelJson as tf.io.ModelJSON;
  const { buffer, byteOffset, byteLength } = artifact.weights;
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
      weightData: buffer.slice(byteOffset, byteOffset + byteLength) as ArrayBuffer,
    }),
  );
}

/** A model with the artifact's architecture and freshly initialised weights. */
export async function freshModel(artifact: WeightsArtifact): Promise<tf.LayersModel> {
  const topology = (artifact.modelJson as tf.io.ModelJSON).modelTopology as tf.serialization.ConfigDict;
  return tf.models.modelFromJSON(topology);
}

/** Saves a model in the one-weights-file layout of demo/artifacts. */
export async function saveArtifact(model: tf.LayersModel): Promise<WeightsArtifact> {
  let artifact: WeightsArtifact | undefined;
  await model.save(
    tf.io.withSaveHandler(async (saved) => {
      if (!saved.weightSpecs || !saved.weightData) throw new Error('tfjs saved a model without weights');
      artifact = {
        modelJson: {
          modelTopology: saved.modelTopology,
          format: saved.format,
          generatedBy: saved.generatedBy,
          convertedBy: null,
          weightsManifest: [{ paths: ['model.weights.bin'], weights: saved.weightSpecs }],
        },
        weights: new Uint8Array(tf.io.CompositeArrayBuffer.join(saved.weightData)),
      };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return artifact!;
}
