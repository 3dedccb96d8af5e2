// What `npm run demo:train -- --only <slug>` writes (a demo model: model.json, weights, card.json, eval.json) —
// by default the MNIST classifier, or the spam classifier — trained once by the demo's own script (seeded) into
// the OS temp folder and reused by every test and run until the training code changes: real trained models for
// the tests, without a minute of training each time.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import type { ModelArtifact } from '../../src/inference/engine.js';

const DEMO_DIR = path.resolve('demo');
/** Not part of training: publishing changes nothing in what is trained. */
const NOT_TRAINING = new Set(['publish.ts']);

export type DemoSlug = 'mnist-mlp' | 'spam-classifier';

const trained = new Map<DemoSlug, Promise<string>>();

/** A folder holding `<slug>/` as demo:train writes it (what `demo/artifacts` holds after training). */
export function demoArtifacts(slug: DemoSlug = 'mnist-mlp'): Promise<string> {
  let folder = trained.get(slug);
  if (!folder) trained.set(slug, (folder = train(slug)));
  return folder;
}

/** The demo MNIST MLP as the engine serves it, and its 500 held-out labelled digits (eval.json). */
export async function demoMlp(): Promise<{ artifact: ModelArtifact; evalSet: EvalSet }> {
  const dir = path.join(await demoArtifacts(), 'mnist-mlp');
  const [modelJson, weights, evalJson] = await Promise.all([
    readFile(path.join(dir, 'model.json'), 'utf8'),
    readFile(path.join(dir, 'model.weights.bin')),
    readFile(path.join(dir, 'eval.json'), 'utf8'),
  ]);
  return {
    artifact: { modelJson: JSON.parse(modelJson) as ModelArtifact['modelJson'], weights: new Uint8Array(weights) },
    evalSet: decodeEvalSet(JSON.parse(evalJson)),
  };
}

async function train(slug: DemoSlug): Promise<string> {
  const hash = createHash('sha256');
  for (const file of (await readdir(DEMO_DIR)).filter((f) => f.endsWith('.ts') && !NOT_TRAINING.has(f)).sort()) {
    hash.update(file).update(await readFile(path.join(DEMO_DIR, file)));
  }
  // The MNIST model keeps the folder name it had before other models could be asked for.
  const suffix = slug === 'mnist-mlp' ? '' : `-${slug}`;
  const dir = path.join(tmpdir(), `modelmarket-demo-artifacts-${hash.digest('hex').slice(0, 16)}${suffix}`);
  if (existsSync(path.join(dir, slug, 'eval.json'))) return dir;
  // Trained beside and renamed into place: concurrent test processes never see half a model.
  const staging = `${dir}.${process.pid}.${Date.now()}`;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(DEMO_DIR, 'train.ts'), '--only', slug, '--out', staging],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`demo training failed (${code}):\n${stderr}`);
  await rename(staging, dir).catch(async (error: NodeJS.ErrnoException) => {
    // Another process won the race: its model is the same (seeded).
    if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    await rm(staging, { recursive: true, force: true });
  });
  return dir;
}
