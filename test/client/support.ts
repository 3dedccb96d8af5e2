// A TensorFlow.js model saved as a directory of files, as tensorflowjs_converter writes one: model.json and
// the weight shards its weightsManifest names.
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { toArtifact } from '../inference/models.js';

/** Writes `model` into a new temporary directory, its weights split into `shards` files; returns the directory. */
export async function saveModelDir(model: tf.LayersModel, shards = 1): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-model-'));
  const { modelJson, weights } = await toArtifact(model, shards);
  const paths = (modelJson as { weightsManifest: { paths: string[] }[] }).weightsManifest[0]!.paths;
  const size = Math.ceil(weights.byteLength / paths.length);
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(modelJson));
  for (const [index, name] of paths.entries()) {
    await writeFile(path.join(dir, name), weights.subarray(index * size, (index + 1) * size));
  }
  return dir;
}
