// Real TensorFlow.js models for the tests, published the way an owner does it: model.save(tf.io.http(...)).
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { TestServer } from './server.js';
import { authHeaders, type Credentials } from './server.js';

import { artifactHash, canonicalise } from '../../src/models/artifact-service.js';
import type { StoredArtifact } from '../../src/models/artifact-storage.js';
import { buildMlp, buildTwoHeaded, toArtifact } from '../inference/models.js';

export { buildMlp, buildTwoHeaded };

/** A model's bytes as the artifact store keeps them (canonical form, as an upload stores them) and their hash. */
export async function storedArtifactOf(model: tf.LayersModel): Promise<StoredArtifact & { sha256: string }> {
  const artifact = await toArtifact(model);
  const { modelJson, weights } = canonicalise({
    modelJson: Buffer.from(JSON.stringify(artifact.modelJson)),
    weights: new Map([['model.weights.bin', Buffer.from(artifact.weights)]]),
  });
  return { modelJson, weights, sha256: artifactHash({ modelJson, weights }) };
}

/** Embedding 4 → average pooling → 2-class softmax over token ids, seeded: the smallest real text classifier. */
export function buildTextClassifier(vocabularySize: number, maxLength: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.embedding({
        inputDim: vocabularySize,
        outputDim: 4,
        inputLength: maxLength,
        embeddingsInitializer: tf.initializers.randomNormal({ seed: 3 }),
      }),
      tf.layers.globalAveragePooling1d(),
      tf.layers.dense({
        units: 2,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }),
      }),
    ],
  });
}

export const DIGITS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

/** Uploads a model with tfjs's own HTTP save handler; returns the server's JSON answer. */
export async function uploadWithTfjs(server: TestServer, model: tf.LayersModel, auth: Credentials) {
  const result = await model.save(
    tf.io.http(`${server.origin}/v1/artifacts`, { requestInit: { headers: authHeaders(auth) } }),
  );
  const response = result.responses![0]!;
  assert.equal(response.status, 201);
  return (await response.json()) as { id: string; sha256: string; sizeBytes: number };
}

/** Posts model.json and its weights as `model.save(tf.io.http(url))` does; the status and JSON answer. */
export async function uploadFiles(server: TestServer, auth: Credentials, modelJson: Uint8Array, weights: Uint8Array) {
  const form = new FormData();
  form.append('model.json', new Blob([new Uint8Array(modelJson)], { type: 'application/json' }), 'model.json');
  form.append('model.weights.bin', new Blob([new Uint8Array(weights)]), 'model.weights.bin');
  const response = await fetch(`${server.origin}/v1/artifacts`, {
    method: 'POST',
    headers: authHeaders(auth),
    body: form,
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

export const CREATE_MODEL = `mutation CreateModel($input: CreateModelInput!) {
  createModel(input: $input) { id slug name task tags visibility owner { id } card { intendedUse } } }`;

export const PUBLISH = `mutation Publish($input: PublishModelVersionInput!) {
  publishModelVersion(input: $input) { id version status signature labels sizeBytes sha256 createdAt changelog aliases
    metrics { dataset samples accuracy macroF1 confusionMatrix } } }`;

export const PREDICT = `mutation Predict($input: PredictInput!) {
  predict(input: $input) { id requestId latencyMs contractId modelVersion { version } outputs { label score top { label score } values } } }`;

let slugCounter = 0;
export function uniqueSlug(prefix = 'model'): string {
  slugCounter += 1;
  return `${prefix}-${process.pid}-${slugCounter}-${Math.random().toString(36).slice(2, 7)}`;
}

export async function createModel(server: TestServer, auth: Credentials, input: Record<string, unknown> = {}) {
  const res = await server.gql(
    CREATE_MODEL,
    { input: { slug: uniqueSlug(), name: 'Digits', task: 'IMAGE_CLASSIFICATION', visibility: 'PUBLIC', ...input } },
    auth,
  );
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createModel as { id: string; slug: string };
}

/** Publishes a version; unmarked unless `watermark: true` is passed (marking has its own tests). */
export async function publish(server: TestServer, auth: Credentials, input: Record<string, unknown>) {
  const res = await server.gql(PUBLISH, { input: { watermark: false, ...input } }, auth);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.publishModelVersion as {
    id: string;
    version: string;
    signature: any;
    labels: string[];
    metrics: any;
  };
}

/** A model with a published version, ready for predict. */
export async function publishedMlp(
  server: TestServer,
  auth: Credentials,
  options: { sizes?: number[]; seed?: number; version?: string } = {},
) {
  const tfModel = buildMlp(options.sizes ?? [784, 16, 10], options.seed ?? 7);
  const artifact = await uploadWithTfjs(server, tfModel, auth);
  const model = await createModel(server, auth);
  const version = await publish(server, auth, {
    model: model.slug,
    version: options.version ?? '1.0.0',
    artifactId: artifact.id,
    labels: DIGITS.slice(0, (options.sizes ?? [784, 16, 10]).at(-1)),
  });
  return { tfModel, artifact, model, version };
}

/** A published regression model (one Dense unit over the features) whose signature reads tabular objects. */
export async function publishedTabular(
  server: TestServer,
  auth: Credentials,
  features: { name: string; mean?: number; std?: number }[],
  seed = 8,
) {
  const tfModel = tf.sequential({
    layers: [
      tf.layers.dense({
        units: 1,
        inputShape: [features.length],
        kernelInitializer: tf.initializers.glorotUniform({ seed }),
      }),
    ],
  });
  const artifact = await uploadWithTfjs(server, tfModel, auth);
  const model = await createModel(server, auth, { task: 'REGRESSION' });
  await publish(server, auth, {
    model: model.slug,
    version: '1.0.0',
    artifactId: artifact.id,
    signature: {
      input: { shape: [features.length], dtype: 'float32', preprocessing: { kind: 'tabular', features } },
      output: { kind: 'values', size: 1 },
    },
  });
  return { tfModel, model };
}

/** The model's own answer, computed in this process with tfjs. */
export function expectedOutputs(model: tf.LayersModel, rows: number[][], shape: number[]): number[][] {
  return tf.tidy(
    () => (model.predict(tf.tensor(rows.flat(), [rows.length, ...shape])) as tf.Tensor).arraySync() as number[][],
  );
}

export function assertClose(actual: number[], expected: number[], tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((value, i) =>
    assert.ok(Math.abs(value - expected[i]!) <= tolerance, `index ${i}: ${value} vs ${expected[i]}`),
  );
}

export function randomRows(count: number, size: number, seed: number): number[][] {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: count }, () => Array.from({ length: size }, () => next()));
}

/** buildTwoHeaded's own answers for rows of `a` and `b`: [kind rows, score rows]. */
export function expectedTwoHeaded(model: tf.LayersModel, a: number[][], b: number[][]): [number[][], number[][]] {
  return tf.tidy(() => {
    const [kind, score] = model.predict([tf.tensor2d(a), tf.tensor2d(b)]) as tf.Tensor[];
    return [kind!.arraySync() as number[][], score!.arraySync() as number[][]];
  });
}

export const TWO_HEADED_SIGNATURE = {
  inputs: [
    { name: 'b', shape: [16], dtype: 'float32' },
    { name: 'a', shape: [32], dtype: 'float32' },
  ],
  outputs: [
    { name: 'score', kind: 'values', size: 1 },
    { name: 'kind', kind: 'classification', labels: ['cat', 'dog', 'fox'] },
  ],
};

/** An MNIST-shaped image signature: 28×28 grey pixels scaled to [0, 1], as the demo's digit models take them. */
export const DIGIT_IMAGE_SIGNATURE = {
  input: {
    shape: [28, 28, 1],
    dtype: 'float32',
    preprocessing: { kind: 'image', height: 28, width: 28, channels: 1, scaling: 'unit' },
  },
  output: { kind: 'classification', labels: DIGITS },
};

/**
 * A published digit classifier of the demo's image signature (Flatten → Dense 10 softmax, seeded, untrained):
 * an image model in milliseconds where the trained demo MNIST model would take a minute.
 */
export async function publishedDigitClassifier(
  server: TestServer,
  auth: Credentials,
  options: { model?: Record<string, unknown>; version?: Record<string, unknown> } = {},
) {
  const tfModel = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [28, 28, 1] }),
      tf.layers.dense({
        units: DIGITS.length,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 11 }),
      }),
    ],
  });
  const artifact = await uploadWithTfjs(server, tfModel, auth);
  const model = await createModel(server, auth, options.model);
  const version = await publish(server, auth, {
    model: model.slug,
    version: '1.0.0',
    artifactId: artifact.id,
    signature: DIGIT_IMAGE_SIGNATURE,
    labels: DIGITS,
    ...options.version,
  });
  return { tfModel, model, version };
}
