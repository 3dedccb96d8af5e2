// The native TensorFlow backend against WebAssembly, and what happens when a backend named in INFERENCE_BACKEND cannot
// start. Which half runs depends on whether `npm run setup:native` built tfjs-node here: `npm test` after `npm ci`
// runs the second, `npm run test:native` the first (and fails if the native backend does not start).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildCnn, buildMlp, buildTextClassifier } from '../../demo/models.js';
import { InferenceEngine, type InferenceEngineOptions, type TensorInput } from '../../src/inference/engine.js';
import type { BackendName } from '../../src/inference/backend-names.js';
import { TEST_BACKEND } from '../support/inference-backend.js';
import { createTestDatabase } from '../support/server.js';
import { modelRef, toArtifact } from './models.js';

/**
 * Largest difference allowed between the backends' outputs (class probabilities). Both compute in float32 but sum in
 * different orders (oneDNN blocks its matrix products); measured differences on these models are below 1e-6.
 */
const BACKEND_TOLERANCE = 1e-5;
const INSTANCES = 16;

const scratch: string[] = [];
async function startEngine(backend: BackendName): Promise<InferenceEngine> {
  const artifactDir = await mkdtemp(path.join(os.tmpdir(), `mm-backend-${backend}-`));
  scratch.push(artifactDir);
  const options: InferenceEngineOptions = {
    workers: 1,
    maxBatchSize: 64,
    maxWaitMs: 2,
    maxQueueDepth: 1024,
    cacheBytes: 64 * 1024 * 1024,
    artifactDir,
    batching: true,
    backend,
  };
  return InferenceEngine.start(options);
}

/** Deterministic values: images in [0, 1], token ids below the vocabulary. */
function inputFor(shape: number[], dtype: 'float32' | 'int32', below: number): TensorInput {
  const size = shape.reduce((a, b) => a * b, 1);
  const data =
    dtype === 'int32'
      ? Int32Array.from({ length: size }, (_, i) => (i * 7919) % below)
      : Float32Array.from({ length: size }, (_, i) => ((i * 7919) % 256) / 255);
  return { data, shape, dtype };
}

let native: InferenceEngine | undefined;
let nativeFailure: string | undefined;

before(async () => {
  try {
    native = await startEngine('tensorflow');
  } catch (error) {
    nativeFailure = (error as Error).message;
  }
});

after(async () => {
  await native?.close();
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('inference backends', () => {
  test('the native TensorFlow backend computes what WebAssembly computes on the demo architectures', async (t) => {
    if (nativeFailure !== undefined) {
      // npm run test:native asks for tensorflow: there, not starting is the failure this test exists for.
      if (TEST_BACKEND === 'tensorflow') assert.fail(nativeFailure);
      return t.skip('tfjs-node is not built here (npm run setup:native); npm run test:native runs this');
    }
    assert.equal(native!.backend, 'tensorflow');
    const wasm = await startEngine('wasm');
    try {
      assert.equal(wasm.backend, 'wasm');
      const architectures = [
        { name: 'mlp', model: buildMlp([28, 28, 1], 10), input: inputFor([INSTANCES, 28, 28, 1], 'float32', 1) },
        { name: 'cnn', model: buildCnn([28, 28, 1], 10), input: inputFor([INSTANCES, 28, 28, 1], 'float32', 1) },
        {
          name: 'text',
          model: buildTextClassifier(5000, 64, 2),
          input: inputFor([INSTANCES, 64], 'int32', 5000),
        },
      ];
      for (const { name, model, input } of architectures) {
        const ref = modelRef(await toArtifact(model));
        model.dispose();
        const [fromNative, fromWasm] = await Promise.all([native!.predict(ref, input), wasm.predict(ref, input)]);
        assert.deepEqual(fromNative.shape, fromWasm.shape, name);
        const largest = fromNative.data.reduce(
          (max, value, i) => Math.max(max, Math.abs(value - fromWasm.data[i]!)),
          0,
        );
        assert.ok(largest <= BACKEND_TOLERANCE, `${name}: native and wasm differ by ${largest}`);
        // Real outputs, not zeros on both sides: each row is a softmax, summing to one.
        const firstRow = fromNative.data.slice(0, fromNative.shape[1]);
        assert.ok(Math.abs(firstRow.reduce((sum, value) => sum + value, 0) - 1) < 1e-5, name);
      }
    } finally {
      await wasm.close();
    }
  });

  test('a backend named in INFERENCE_BACKEND that cannot start stops the server, saying which and what to do', async (t) => {
    if (nativeFailure === undefined) return t.skip('tfjs-node is built here, so its failure cannot be shown');
    assert.match(nativeFailure, /^the tensorflow inference backend cannot be initialised: .+npm run setup:native/);
    const database = await createTestDatabase();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'mm-backend-server-'));
    scratch.push(dataDir);
    try {
      // npm start, run to its end: all of its output is read once its pipes close.
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: {
          ...process.env,
          DATABASE_URL: database.url,
          DATA_DIR: dataDir,
          APP_SECRET: randomBytes(32).toString('hex'),
          PORT: '0',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'warn',
          INFERENCE_BACKEND: 'tensorflow',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const [code] = (await once(child, 'close')) as [number | null];
      assert.equal(code, 1, output);
      assert.match(
        output,
        /^Modelmarket failed to start: the tensorflow inference backend cannot be initialised: .+; `npm run setup:native` builds @tensorflow\/tfjs-node offline$/m,
      );
      assert.doesNotMatch(output, /GraphQL API:/);
    } finally {
      await database.drop();
    }
  });
});
