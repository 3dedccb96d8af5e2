// POST /v1/datasets over real HTTP: content addressing per uploader, privacy, every refusal with its line, and a
// CSV data set evaluating a small tabular classifier trained here.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { classificationMetrics } from '../../src/evaluation/metrics.js';
import { createApiKey, expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { createModel, publish, randomRows, uploadWithTfjs } from '../support/models.js';
import { startTestServer, unsentBody, type TestServer } from '../support/server.js';
import { datasetId, evaluate, uploadDataset, waitForEvaluation } from './support.js';

const MAX_BYTES = 64 * 1024;
const MAX_ROWS = 50;
const MAX_LINE_BYTES = 4096;

const numbersJsonl = (rows: number, seed = 1) =>
  randomRows(rows, 4, seed)
    .map((input, i) => JSON.stringify({ input, label: i % 2 }))
    .join('\n');

const DATASET = `query D($id: ID!) { dataset(id: $id) { id name format sha256 sizeBytes rows columns } }`;

describe('labelled data sets', () => {
  let server: TestServer;
  let ada: SignedUpUser;

  before(async () => {
    server = await startTestServer({
      DATASET_MAX_BYTES: String(MAX_BYTES),
      DATASET_MAX_ROWS: String(MAX_ROWS),
      DATASET_MAX_LINE_BYTES: String(MAX_LINE_BYTES),
    });
    ada = await signUp(server);
  });
  after(() => server.close());

  const count = async () => (await server.sql.query('SELECT count(*)::int AS n FROM datasets')).rows[0].n as number;

  it('is content-addressed per uploader and private to them', async () => {
    const body = numbersJsonl(20);
    const first = await uploadDataset(
      server,
      { token: ada.token },
      body,
      'application/x-ndjson',
      '?name=random%20rows',
    );
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(
      { ...first.body, id: undefined, createdAt: undefined },
      {
        id: undefined,
        createdAt: undefined,
        name: 'random rows',
        format: 'JSONL',
        sha256: createHash('sha256').update(body).digest('hex'),
        sizeBytes: Buffer.byteLength(body),
        rows: 20,
        columns: [],
      },
    );
    const again = await uploadDataset(server, { token: ada.token }, body);
    assert.equal(again.status, 200);
    assert.equal(again.body.id, first.body.id);

    const grace = await signUp(server);
    expectError(await server.gql(DATASET, { id: first.body.id }, { token: grace.token }), 'NOT_FOUND');
    expectError(
      await server.gql(`mutation { deleteDataset(id: "${first.body.id}") { id } }`, {}, { token: grace.token }),
      'NOT_FOUND',
    );
    const theirs = await uploadDataset(server, { token: grace.token }, body);
    assert.equal(theirs.status, 201);
    assert.notEqual(theirs.body.id, first.body.id);
    const listed = await server.gql(`{ datasets { id rows } }`, {}, { token: grace.token });
    assert.deepEqual(listed.data!.datasets, [{ id: theirs.body.id, rows: 20 }]);
    const read = await server.gql(DATASET, { id: first.body.id }, { token: ada.token });
    assert.equal(read.data!.dataset.sha256, first.body.sha256);

    const deleted = await server.gql(
      `mutation { deleteDataset(id: "${first.body.id}") { id } }`,
      {},
      { token: ada.token },
    );
    assert.equal(deleted.errors, undefined);
    expectError(await server.gql(DATASET, { id: first.body.id }, { token: ada.token }), 'NOT_FOUND');
    const { rows } = await server.sql.query(`SELECT action FROM audit_events WHERE target_id = $1 ORDER BY chain_seq`, [
      first.body.id,
    ]);
    assert.deepEqual(
      rows.map((r) => r.action),
      ['dataset.uploaded', 'dataset.deleted'],
    );
    assert.equal((await server.sql.query('SELECT count(*)::int AS n FROM dataset_parts')).rows[0].n, 1);
  });

  it('refuses what is not a labelled data set within its limits, naming the first bad line, storing nothing', async () => {
    const before = await count();
    const auth = { token: ada.token };
    const refusals: [string, string, number, RegExp, number | undefined][] = [
      [
        '{"input": [1, 2], "label": 0}\n{"input": [1, 2], "label": 1}\n{"input": [1, 2, "label": 0}',
        'application/x-ndjson',
        400,
        /line 3: not a JSON object/,
        3,
      ],
      ['{"input": [1, 2], "label": 0}\n\n{"label": 1}', 'application/x-ndjson', 400, /line 3: missing "input"/, 3],
      ['{"input": [1], "label": 0, "weight": 2}', 'application/x-ndjson', 400, /line 1: unknown key "weight"/, 1],
      ['{"input": [1], "label": -1}', 'application/x-ndjson', 400, /line 1: label must be a class label/, 1],
      ['[1, 2, 3]', 'application/x-ndjson', 400, /line 1: expected an object/, 1],
      ['', 'application/x-ndjson', 400, /no example/, undefined],
      [
        numbersJsonl(MAX_ROWS + 1),
        'application/x-ndjson',
        400,
        new RegExp(`more than ${MAX_ROWS} examples`),
        undefined,
      ],
      [`{"input": "${'a'.repeat(MAX_LINE_BYTES)}", "label": 0}`, 'application/x-ndjson', 400, /line 1: longer than/, 1],
      ['a,b,c\n1,2,3', 'text/csv', 400, /line 1: the header row has no "label" column/, 1],
      ['a,label\n1,x\n2,y\n3', 'text/csv', 400, /line 4: 1 fields; the header has 2/, 4],
      ['a,label\n1,x\nten,y', 'text/csv', 400, /line 3: a: "ten" is not a number/, 3],
      ['a,a,label\n1,2,x', 'text/csv', 400, /line 1: column "a" appears twice/, 1],
      ['a,label\n"1,x', 'text/csv', 400, /line 2: unterminated quoted field/, 2],
      ['a,label\n', 'text/csv', 400, /no example under the header row/, undefined],
    ];
    for (const [body, type, status, message, line] of refusals) {
      const answer = await uploadDataset(server, auth, body, type);
      assert.equal(answer.status, status, `${body.slice(0, 60)}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, 'BAD_USER_INPUT');
      assert.match(answer.body.error.message, message);
      assert.equal(answer.body.error.line, line);
    }
    const unsupported = await uploadDataset(server, auth, numbersJsonl(2), 'text/plain');
    assert.equal(unsupported.status, 415);
    const anonymous = await uploadDataset(server, {}, numbersJsonl(2));
    assert.equal(anonymous.status, 401);
    const { secret } = await createApiKey(server, ada.token, ['READ_USAGE']);
    const scoped = await uploadDataset(server, { apiKey: secret }, numbersJsonl(2));
    assert.equal(scoped.status, 403);
    assert.equal(scoped.body.error.requiredScope, 'PREDICT');
    // Over the limit: refused from its declared length, before any of it is read.
    const declared = await unsentBody(server, '/v1/datasets', {
      'content-type': 'application/x-ndjson',
      authorization: `Bearer ${ada.token}`,
    });
    assert.equal(declared.statusCode, 413);
    const streamed = await uploadDataset(server, auth, Buffer.alloc(MAX_BYTES + 1, 0x20));
    assert.equal(streamed.status, 413);
    assert.equal(streamed.body.error.code, 'PAYLOAD_TOO_LARGE');
    assert.equal(await count(), before);
  });

  it('evaluates a tabular classifier trained here on a CSV data set, as predict answers it', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const auth = { token: owner.token };
    // label = a + 2b − c > 1: a linear rule a softmax layer learns in a few epochs.
    const rows = randomRows(240, 3, 11);
    const truth = rows.map(([a, b, c]) => (a! + 2 * b! - c! > 1 ? 1 : 0));
    const classifier = tf.sequential({
      layers: [
        tf.layers.dense({
          units: 2,
          activation: 'softmax',
          inputShape: [3],
          kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }),
        }),
      ],
    });
    classifier.compile({ optimizer: tf.train.adam(0.1), loss: 'sparseCategoricalCrossentropy' });
    await classifier.fit(tf.tensor2d(rows.slice(0, 200)), tf.tensor1d(truth.slice(0, 200)), { epochs: 40, verbose: 0 });
    const artifact = await uploadWithTfjs(server, classifier, auth);
    const { slug } = await createModel(server, auth, { task: 'TABULAR_CLASSIFICATION' });
    await publish(server, auth, {
      model: slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: {
        input: {
          shape: [3],
          dtype: 'float32',
          preprocessing: { kind: 'tabular', features: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] },
        },
        output: { kind: 'classification', labels: ['no', 'yes'] },
      },
    });
    const held = rows.slice(200);
    const heldTruth = truth.slice(200);
    // The label column in the middle, a quoted header, CRLF line ends, labels by name and by index.
    const csv = [
      '"a",label,"c",b',
      ...held.map(([a, b, c], i) => `${a},${i % 2 ? ['no', 'yes'][heldTruth[i]!] : heldTruth[i]},${c},${b}`),
    ].join('\r\n');
    const dataset = await datasetId(server, auth, csv, 'text/csv');
    const read = await server.gql(DATASET, { id: dataset }, auth);
    assert.deepEqual(read.data!.dataset.columns, ['a', 'c', 'b']);
    assert.equal(read.data!.dataset.format, 'CSV');

    const done = await waitForEvaluation(server, auth, (await evaluate(server, auth, { model: slug, dataset })).id);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.error));
    const res = await server.gql(
      `mutation P($input: PredictInput!) { predict(input: $input) { outputs { label } } }`,
      { input: { model: slug, inputs: held.map(([a, b, c]) => ({ a, b, c })) } },
      auth,
    );
    const predicted = res.data!.predict.outputs.map((o: { label: string }) => (o.label === 'yes' ? 1 : 0));
    const expected = classificationMetrics(heldTruth, predicted, 2, ['no', 'yes']);
    assert.equal(done.report.accuracy, expected.accuracy);
    assert.deepEqual(done.report.confusionMatrix, expected.confusionMatrix);
    assert.equal(done.report.macroF1, expected.macroF1);
    assert.ok(done.report.accuracy >= 0.8, `the classifier learnt the rule: ${done.report.accuracy}`);

    // A CSV data set is for tabular models; JSONL of the wrong shape fails on its first bad line.
    const image = await publishedMnistLike(server, auth);
    const refused = await waitForEvaluation(server, auth, (await evaluate(server, auth, { model: image, dataset })).id);
    assert.equal(refused.error.code, 'BAD_USER_INPUT');
    assert.match(refused.error.message, /A CSV data set evaluates tabular models only/);
  });
});

/** A 4-input, 2-class classifier taking plain arrays (not tabular). */
async function publishedMnistLike(server: TestServer, auth: { token: string }): Promise<string> {
  const classifier = tf.sequential({
    layers: [
      tf.layers.dense({
        units: 2,
        activation: 'softmax',
        inputShape: [4],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 5 }),
      }),
    ],
  });
  const artifact = await uploadWithTfjs(server, classifier, auth);
  const { slug } = await createModel(server, auth);
  await publish(server, auth, { model: slug, version: '1.0.0', artifactId: artifact.id, labels: ['no', 'yes'] });
  return slug;
}
