import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { formatBytes } from '../../src/models/artifact-service.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  assertClose,
  buildMlp,
  createModel,
  DIGITS,
  expectedOutputs,
  PREDICT,
  publish,
  PUBLISH,
  randomRows,
  uploadWithTfjs,
} from '../support/models.js';

async function postArtifact(server: TestServer, form: FormData | string, headers: Record<string, string>) {
  const response = await fetch(`${server.origin}/v1/artifacts`, { method: 'POST', headers, body: form });
  return { status: response.status, body: (await response.json()) as any };
}

interface SavedArtifact {
  modelJson: {
    modelTopology: unknown;
    format: string;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  weights: Uint8Array;
}

async function savedArtifact(model: tf.LayersModel): Promise<SavedArtifact> {
  let saved!: tf.io.ModelArtifacts;
  await model.save(
    tf.io.withSaveHandler(
      async (a) => ((saved = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }),
    ),
  );
  const modelJson = {
    modelTopology: saved.modelTopology,
    format: 'layers-model',
    weightsManifest: [{ paths: ['./model.weights.bin'], weights: saved.weightSpecs ?? [] }],
  };
  return { modelJson, weights: new Uint8Array(saved.weightData as ArrayBuffer) };
}

function form(modelJson: unknown, weights: Record<string, Uint8Array>): FormData {
  const body = new FormData();
  body.append(
    'model.json',
    new Blob([typeof modelJson === 'string' ? modelJson : JSON.stringify(modelJson)], { type: 'application/json' }),
    'model.json',
  );
  for (const [name, bytes] of Object.entries(weights)) body.append(name, new Blob([bytes]), name);
  return body;
}

describe('artifacts: publishing from TensorFlow.js', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  const count = async () => Number((await server.sql.query('SELECT count(*) FROM artifacts')).rows[0].count);

  before(async () => {
    server = await startTestServer({ ARTIFACT_MAX_BYTES: String(2 * 1024 * 1024) });
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  it('accepts exactly what model.save(tf.io.http(...)) sends, and serves it back loadable by tf.loadLayersModel', async () => {
    const model = buildMlp([784, 16, 10], 1);
    const uploaded = await uploadWithTfjs(server, model, { token: owner.token });
    assert.match(uploaded.sha256, /^[0-9a-f]{64}$/);
    assert.ok(uploaded.sizeBytes > 784 * 16 * 4);
    const target = await createModel(server, { token: owner.token });
    const version = await publish(
      server,
      { token: owner.token },
      { model: target.slug, version: '1.0.0', artifactId: uploaded.id, labels: DIGITS },
    );
    assert.deepEqual(version.signature, {
      input: { shape: [784], dtype: 'float32', preprocessing: { kind: 'none' } },
      output: { kind: 'classification', labels: DIGITS },
    });

    const headers = { authorization: `Bearer ${owner.token}` };
    const loaded = await tf.loadLayersModel(`${server.origin}/v1/versions/${version.id}/model.json`, {
      requestInit: { headers },
    });
    const rows = randomRows(3, 784, 5);
    const reloaded = expectedOutputs(loaded, rows, [784]);
    expectedOutputs(model, rows, [784]).forEach((row, i) => assertClose(reloaded[i]!, row, 1e-6));

    // Others cannot download it without a licence that allows it; anonymous callers must authenticate.
    const stranger = await signUp(server, { role: 'OWNER' });
    const denied = await fetch(`${server.origin}/v1/versions/${version.id}/model.json`, {
      headers: { authorization: `Bearer ${stranger.token}` },
    });
    assert.equal(denied.status, 403);
    const anonymous = await fetch(`${server.origin}/v1/versions/${version.id}/model.weights.bin`);
    assert.equal(anonymous.status, 401);
  });

  it('stores identical bytes once (content-addressed) but records each upload', async () => {
    const model = buildMlp([4, 3], 2);
    const first = await uploadWithTfjs(server, model, { token: owner.token });
    const second = await uploadWithTfjs(server, model, { token: owner.token });
    assert.equal(first.sha256, second.sha256);
    assert.notEqual(first.id, second.id);
    const { rows } = await server.sql.query('SELECT count(*)::int AS n FROM artifact_blobs WHERE sha256 = $1', [
      first.sha256,
    ]);
    assert.equal(rows[0].n, 1);
  });

  it('accepts sharded weights uploaded as separate files', async () => {
    const { modelJson, weights } = await savedArtifact(buildMlp([8, 4, 2], 3));
    const half = Math.floor(weights.byteLength / 2);
    const sharded = {
      ...modelJson,
      weightsManifest: [
        { paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: modelJson.weightsManifest[0]!.weights },
      ],
    };
    const res = await postArtifact(
      server,
      form(sharded, {
        'group1-shard1of2.bin': weights.subarray(0, half),
        'group1-shard2of2.bin': weights.subarray(half),
      }),
      {
        authorization: `Bearer ${owner.token}`,
      },
    );
    assert.equal(res.status, 201, JSON.stringify(res.body));
  });

  it('takes parts by their form name, as curl -F name=@file sends them, and says what it received when they do not fit', async () => {
    const { modelJson, weights } = await savedArtifact(buildMlp([8, 4, 2], 5));
    const auth = { authorization: `Bearer ${owner.token}` };
    const json = JSON.stringify(modelJson);
    const readme = await readFile('README.md');
    /** A multipart body as curl builds it: each part a form name, and a file name and type unless it is a text field. */
    const curlForm = (parts: [name: string, bytes: Uint8Array | string, filename?: string, type?: string][]) => {
      const body = new FormData();
      for (const [name, bytes, filename, type] of parts) {
        if (filename === undefined) body.append(name, String(bytes));
        else body.append(name, new Blob([bytes], type ? { type } : {}), filename);
      }
      return body;
    };
    const before = await count();

    // -F model.json=@export/my-model.json -F model.weights.bin=@export/weights-v2.bin: the files' own names do not matter.
    const renamedFiles = await postArtifact(
      server,
      curlForm([
        ['model.json', json, 'my-model.json', 'application/json'],
        ['model.weights.bin', weights, 'weights-v2.bin'],
      ]),
      auth,
    );
    assert.equal(renamedFiles.status, 201, JSON.stringify(renamedFiles.body));

    const expected =
      "expected a part named model.json holding the model's JSON (with modelTopology and weightsManifest)";
    const weightsSize = formatBytes(weights.byteLength);
    const jsonSize = formatBytes(Buffer.byteLength(json));
    const cases: [string, FormData, string][] = [
      [
        '-F model.json=@README.md',
        curlForm([
          ['model.json', readme, 'README.md', 'text/markdown'],
          ['model.weights.bin', weights, 'model.weights.bin'],
        ]),
        `model.json is not valid JSON: ${expected}; received parts: model.json (README.md, text/markdown, ${formatBytes(readme.byteLength)}), model.weights.bin (${weightsSize})`,
      ],
      [
        'a renamed weights part (-F weights.bin=@model.weights.bin)',
        curlForm([
          ['model.json', json, 'model.json', 'application/json'],
          ['weights.bin', weights, 'model.weights.bin'],
        ]),
        `weights file(s) missing from the upload: model.weights.bin; model.json's weightsManifest names model.weights.bin (expected ${weightsSize}); received parts: model.json (application/json, ${jsonSize}), weights.bin (model.weights.bin, ${weightsSize})`,
      ],
      [
        'files under one form name (-F file=@model.json -F file=@model.weights.bin)',
        curlForm([
          ['file', json, 'model.json', 'application/json'],
          ['file', weights, 'model.weights.bin'],
        ]),
        `the part file was sent twice; each file goes in a part of its own name; received parts: file (model.json, application/json, ${jsonSize}), file (model.weights.bin, ${weightsSize})`,
      ],
      [
        'a text field instead of a file (-F model.json=model.json, no @)',
        curlForm([
          ['model.json', 'model.json'],
          ['model.weights.bin', weights, 'model.weights.bin'],
        ]),
        `the upload has no model.json part: ${expected}; received parts: model.json (a text field, not a file: send a file with -F name=@path, 10 bytes), model.weights.bin (${weightsSize})`,
      ],
      ['an empty form', curlForm([]), `the upload has no model.json part: ${expected}; received no parts`],
    ];
    for (const [what, body, message] of cases) {
      const res = await postArtifact(server, body, auth);
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.deepEqual(res.body.error, { code: 'BAD_ARTIFACT', message }, what);
    }
    assert.equal(await count(), before + 1);
  });

  it('refuses every kind of bad artifact with a 4xx that says why, storing nothing', async () => {
    const { modelJson, weights } = await savedArtifact(buildMlp([8, 4, 2], 4));
    const auth = { authorization: `Bearer ${owner.token}` };
    const consumer = await signUp(server);
    const readOnlyKey = await createApiKey(server, owner.token, ['PREDICT']);
    const before = await count();
    const cases: [string, () => Promise<{ status: number; body: any }>, number, RegExp][] = [
      ['no credentials', () => postArtifact(server, form(modelJson, { 'model.weights.bin': weights }), {}), 401, /./],
      [
        'a consumer',
        () =>
          postArtifact(server, form(modelJson, { 'model.weights.bin': weights }), {
            authorization: `Bearer ${consumer.token}`,
          }),
        403,
        /role/,
      ],
      [
        'a key without MANAGE_MODELS',
        () =>
          postArtifact(server, form(modelJson, { 'model.weights.bin': weights }), { 'x-api-key': readOnlyKey.secret }),
        403,
        /MANAGE_MODELS/,
      ],
      [
        'not multipart',
        () => postArtifact(server, JSON.stringify(modelJson), { ...auth, 'content-type': 'application/json' }),
        415,
        /multipart/,
      ],
      [
        'no model.json',
        () => {
          const weightsOnly = new FormData();
          weightsOnly.append('model.weights.bin', new Blob([weights]), 'model.weights.bin');
          return postArtifact(server, weightsOnly, auth);
        },
        400,
        /model\.json/,
      ],
      [
        'invalid JSON',
        () => postArtifact(server, form('{"modelTopology": ', { 'model.weights.bin': weights }), auth),
        400,
        /not valid JSON/,
      ],
      ['not a layers model', () => postArtifact(server, form({ weightsManifest: [] }, {}), auth), 400, /layers model/],
      ['a missing weights file', () => postArtifact(server, form(modelJson, {}), auth), 400, /missing/],
      [
        'an unexpected file',
        () => postArtifact(server, form(modelJson, { 'model.weights.bin': weights, 'evil.bin': weights }), auth),
        400,
        /unexpected/,
      ],
      [
        'truncated weights',
        () => postArtifact(server, form(modelJson, { 'model.weights.bin': weights.subarray(4) }), auth),
        422,
        /bytes/,
      ],
      [
        'weights whose shapes do not fit the layers',
        () => {
          const specs = modelJson.weightsManifest[0]!.weights.map((w, i) => (i === 0 ? { ...w, shape: [4, 8] } : w));
          return postArtifact(
            server,
            form(
              { ...modelJson, weightsManifest: [{ paths: ['./model.weights.bin'], weights: specs }] },
              { 'model.weights.bin': weights },
            ),
            auth,
          );
        },
        422,
        /does not load/,
      ],
      [
        'an oversized upload',
        () => postArtifact(server, form(modelJson, { 'model.weights.bin': new Uint8Array(3 * 1024 * 1024) }), auth),
        413,
        /limited/,
      ],
    ];
    for (const [what, send, status, message] of cases) {
      const res = await send();
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error.message, message, what);
      assert.ok(res.body.error.code, what);
    }
    assert.equal(await count(), before);
  });
});

describe('versions: immutability, signatures, metrics', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let artifactId: string;
  let tfModel: tf.LayersModel;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    tfModel = buildMlp([784, 8, 3], 9);
    artifactId = (await uploadWithTfjs(server, tfModel, { token: owner.token })).id;
  });
  after(() => server.close());

  it('refuses to republish a version number, and bad version numbers', async () => {
    const model = await createModel(server, { token: owner.token });
    await publish(server, { token: owner.token }, { model: model.slug, version: '1.0.0', artifactId });
    const count = async () => Number((await server.sql.query('SELECT count(*) FROM model_versions')).rows[0].count);
    const before = await count();
    expectError(
      await server.gql(PUBLISH, { input: { model: model.slug, version: '1.0.0', artifactId } }, { token: owner.token }),
      'CONFLICT',
    );
    for (const version of ['1.0', 'v1', '1.0.0+build.1', '']) {
      expectError(
        await server.gql(PUBLISH, { input: { model: model.slug, version, artifactId } }, { token: owner.token }),
        'BAD_USER_INPUT',
      );
    }
    assert.equal(await count(), before);
  });

  it("refuses another owner's artifact and unknown artifacts", async () => {
    const model = await createModel(server, { token: owner.token });
    const other = await signUp(server, { role: 'OWNER' });
    const theirModel = await createModel(server, { token: other.token });
    expectError(
      await server.gql(
        PUBLISH,
        { input: { model: theirModel.slug, version: '1.0.0', artifactId } },
        { token: other.token },
      ),
      'NOT_FOUND',
    );
    expectError(
      await server.gql(
        PUBLISH,
        { input: { model: model.slug, version: '1.0.0', artifactId: '00000000-0000-4000-8000-000000000000' } },
        { token: owner.token },
      ),
      'NOT_FOUND',
    );
    expectError(
      await server.gql(PUBLISH, { input: { model: model.slug, version: '1.0.0', artifactId } }, { token: other.token }),
      'FORBIDDEN',
    );
  });

  it('checks labels and explicit signatures against the model', async () => {
    const model = await createModel(server, { token: owner.token });
    const bad = async (input: Record<string, unknown>, field: string, message: RegExp) => {
      const error = expectError(
        await server.gql(
          PUBLISH,
          { input: { model: model.slug, version: '1.0.0', artifactId, ...input } },
          { token: owner.token },
        ),
        'BAD_USER_INPUT',
      );
      assert.equal(error.extensions!.field, field);
      assert.match(error.message, message);
    };
    await bad({ labels: ['a', 'b'] }, 'input.labels', /3 outputs but 2 labels/);
    await bad({ labels: ['a', 'a', 'b'] }, 'input.labels', /distinct/);
    const output = { kind: 'classification', labels: ['a', 'b', 'c'] };
    await bad({ signature: { input: { shape: [28, 28], dtype: 'float32' }, output } }, 'input.signature', /disagrees/);
    await bad({ signature: { input: { shape: [784], dtype: 'int32' }, output } }, 'input.signature', /dtype/);
    await bad(
      {
        signature: {
          input: { shape: [784], dtype: 'float32' },
          output: { kind: 'classification', labels: ['a', 'b'] },
        },
      },
      'input.signature',
      /output size/,
    );
    await bad(
      {
        signature: {
          input: {
            shape: [784],
            dtype: 'float32',
            preprocessing: { kind: 'text', vocabulary: ['<pad>', '<unk>'], maxLength: 10, lowercase: true },
          },
          output,
        },
      },
      'input.signature',
      /produces \[10\]/,
    );
    await bad({ signature: { inputs: [] } }, 'input.signature', /Invalid signature/);

    const image = { kind: 'image', height: 28, width: 28, channels: 1, scaling: 'unit' };
    const version = await publish(
      server,
      { token: owner.token },
      {
        model: model.slug,
        version: '1.0.0',
        artifactId,
        signature: { input: { shape: [784], dtype: 'float32', preprocessing: image }, output },
      },
    );
    assert.deepEqual(version.signature.input.preprocessing, image);
    assert.deepEqual(version.labels, ['a', 'b', 'c']);
  });

  it('keeps stated metrics consistent with the version', async () => {
    const model = await createModel(server, { token: owner.token });
    const labels = ['a', 'b', 'c'];
    const metrics = {
      dataset: 'held-out 10%',
      samples: 6,
      accuracy: 0.5,
      macroF1: 0.5,
      confusionMatrix: [
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
      ],
      perClass: [{ label: 'a', precision: 0.5, recall: 0.5, f1: 0.5, support: 2 }],
    };
    const wrongTotal = { ...metrics, samples: 7 };
    expectError(
      await server.gql(
        PUBLISH,
        { input: { model: model.slug, version: '1.0.0', artifactId, labels, metrics: wrongTotal } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    expectError(
      await server.gql(
        PUBLISH,
        { input: { model: model.slug, version: '1.0.0', artifactId, labels, metrics: { ...metrics, accuracy: 1.5 } } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    const version = await publish(
      server,
      { token: owner.token },
      { model: model.slug, version: '1.0.0', artifactId, labels, metrics },
    );
    assert.equal(version.metrics.accuracy, 0.5);
    assert.deepEqual(version.metrics.confusionMatrix, metrics.confusionMatrix);
  });

  it('warms the model on publish so the first predict finds it loaded', async () => {
    const model = await createModel(server, { token: owner.token });
    await publish(
      server,
      { token: owner.token },
      { model: model.slug, version: '1.0.0', artifactId, labels: ['a', 'b', 'c'] },
    );
    const rows = randomRows(1, 784, 1);
    const res = await server.gql(PREDICT, { input: { model: model.slug, inputs: rows } }, { token: owner.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assertClose(res.data!.predict.outputs[0].values, expectedOutputs(tfModel, rows, [784])[0]!);
  });
});
