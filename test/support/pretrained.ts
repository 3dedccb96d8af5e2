// Real pretrained TensorFlow.js models, as the npm package `nsfwjs` ships them: each file of a converted model
// (model.json, weight shards) is wrapped in a browserified CommonJS module (the JSON as an object, a shard as a
// base64 string). Unwrapped once into a directory of plain files per model, exactly what
// `tensorflowjs_converter` wrote, and reused by every test.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
// The package exports only its code (dist/cjs/index.js): its model files are found from there.
const PACKAGE_DIR = path.resolve(path.dirname(require.resolve('nsfwjs')), '..', '..');

export interface PretrainedModel {
  /** Directory holding model.json and its weight shards (file names as model.json's weightsManifest names them). */
  dir: string;
  modelJson: { format?: string; modelTopology: unknown; weightsManifest: { paths: string[]; weights: unknown[] }[] };
  /** The classes, in output order. */
  labels: string[];
}

/** nsfwjs's classes in the models' output order. */
export const NSFW_LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];

const MODELS = {
  /** Keras MobileNetV2 converted as a layers-model, uint8-quantised weights; input [224,224,3] in 0..1; 5 classes. */
  mobilenetV2: 'mobilenet_v2',
  /** MobileNetV2 converted from a SavedModel as a graph-model, uint8-quantised; input `input:0` [224,224,3]. */
  mobilenetV2Graph: 'mobilenet_v2_mid',
} as const;

export type PretrainedName = keyof typeof MODELS;

const loaded = new Map<PretrainedName, Promise<PretrainedModel>>();

/** The model's files on disk, unwrapped on first use (in the OS temp directory, shared by test processes). */
export function pretrained(name: PretrainedName): Promise<PretrainedModel> {
  let model = loaded.get(name);
  if (!model) {
    model = unwrap(MODELS[name]);
    loaded.set(name, model);
  }
  return model;
}

async function unwrap(folder: string): Promise<PretrainedModel> {
  const source = path.join(PACKAGE_DIR, 'dist', 'models', folder);
  const modelJson = require(path.join(source, 'model.min.js')) as PretrainedModel['modelJson'];
  const { version } = JSON.parse(await readFile(path.join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string };
  const dir = path.join(tmpdir(), `modelmarket-pretrained-${version}`, folder);
  const files = new Set(await readdir(dir).catch(() => []));
  const shards = modelJson.weightsManifest.flatMap((group) => group.paths);
  if (!files.has('model.json') || shards.some((shard) => !files.has(shard))) {
    // Written beside and renamed into place: concurrent test processes never see half a model.
    const staging = `${dir}.${process.pid}.${Date.now()}`;
    await mkdir(staging, { recursive: true });
    for (const shard of shards) {
      const base64 = require(path.join(source, `${shard}.min.js`)) as string;
      await writeFile(path.join(staging, shard), Buffer.from(base64, 'base64'));
    }
    await writeFile(path.join(staging, 'model.json'), JSON.stringify(modelJson));
    await rm(dir, { recursive: true, force: true });
    await rename(staging, dir).catch(async (error: NodeJS.ErrnoException) => {
      // Another process won the race: its copy is the same.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      await rm(staging, { recursive: true, force: true });
    });
  }
  return { dir, modelJson, labels: NSFW_LABELS };
}
