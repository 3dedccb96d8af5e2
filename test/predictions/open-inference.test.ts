import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { authHeaders, startTestServer, unsentBody, type Credentials, type TestServer } from '../support/server.js';
import { createApiKey, signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  assertClose,
  buildTwoHeaded,
  createModel,
  expectedOutputs,
  expectedTwoHeaded,
  PREDICT,
  publish,
  publishedMlp,
  publishedTabular,
  randomRows,
  TWO_HEADED_SIGNATURE,
  uploadWithTfjs,
  buildTextClassifier,
} from '../support/models.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertLedgerHolds } from '../support/ledger.js';

interface OipAnswer {
  status: number;
  headers: Headers;
  body: any;
}

describe('Open Inference Protocol (KServe v2 REST)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let mlp: Awaited<ReturnType<typeof publishedMlp>>;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    mlp = await publishedMlp(server, { token: owner.token });
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  const call = async (
    method: 'GET' | 'POST',
    path: string,
    auth: Credentials = {},
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<OipAnswer> => {
    const response = await fetch(`${server.origin}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...authHeaders(auth), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: await response.json() };
  };
  const ownerAuth = () => ({ token: owner.token });
  /** The spec's request shape: one FP32 input tensor holding the whole batch, flat and row-major. */
  const inferRequest = (rows: number[][], extra: Record<string, unknown> = {}) => ({
    inputs: [{ name: 'input', shape: [rows.length, 784], datatype: 'FP32', data: rows.flat() }],
    ...extra,
  });
  const expectOipError = (answer: OipAnswer, status: number, code: string, field?: string) => {
    assert.equal(answer.status, status, JSON.stringify(answer.body));
    assert.equal(typeof answer.body.error, 'string');
    assert.equal(answer.body.code, code, JSON.stringify(answer.body));
    if (field !== undefined) assert.equal(answer.body.field, field, answer.body.error);
  };

  it('answers server metadata and the health probes', async () => {
    const live = await call('GET', '/v2/health/live');
    assert.deepEqual([live.status, live.body], [200, { live: true }]);
    const ready = await call('GET', '/v2/health/ready');
    assert.deepEqual([ready.status, ready.body], [200, { ready: true }]);
    const meta = await call('GET', '/v2');
    assert.equal(meta.status, 200);
    assert.equal(meta.body.name, 'modelmarket');
    assert.match(meta.body.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual(meta.body.extensions, []);
  });

  it('describes a model from its signature, by name, version or alias; hides private models', async () => {
    const expected = {
      name: mlp.model.slug,
      versions: ['1.0.0'],
      platform: 'tensorflowjs',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 10] }],
    };
    for (const path of ['', '/versions/1.0.0', '/versions/latest']) {
      const answer = await call('GET', `/v2/models/${mlp.model.slug}${path}`);
      assert.deepEqual([answer.status, answer.body], [200, expected], path);
    }
    const ready = await call('GET', `/v2/models/${mlp.model.slug}/versions/1.0.0/ready`);
    assert.deepEqual([ready.status, ready.body], [200, { name: mlp.model.slug, ready: true }]);
    expectOipError(await call('GET', `/v2/models/${mlp.model.slug}/versions/7.0.0`), 404, 'NOT_FOUND');
    const hidden = await createModel(server, ownerAuth(), { visibility: 'PRIVATE' });
    expectOipError(await call('GET', `/v2/models/${hidden.slug}`), 404, 'NOT_FOUND');
  });

  it("infers with the spec's request shapes (flat or nested data, any [n, …] shape) and matches tfjs", async () => {
    const rows = randomRows(3, 784, 4);
    const expected = expectedOutputs(mlp.tfModel, rows, [784]);
    const requests = [
      inferRequest(rows, { id: '42', outputs: [{ name: 'output' }] }),
      { inputs: [{ name: 'input', shape: [3, 784], datatype: 'FP32', data: rows }] },
      {
        inputs: [{ name: 'input', shape: [3, 28, 28, 1], datatype: 'FP32', data: rows.flat(), parameters: {} }],
        parameters: {},
      },
    ];
    for (const [index, request] of requests.entries()) {
      const answer = await call('POST', `/v2/models/${mlp.model.slug}/infer`, ownerAuth(), request);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const { body } = answer;
      assert.equal(body.model_name, mlp.model.slug);
      assert.equal(body.model_version, '1.0.0');
      if (index === 0) assert.equal(body.id, '42');
      else assert.equal(body.id, body.parameters.prediction_id);
      assert.equal(body.outputs.length, 1);
      const [output] = body.outputs;
      assert.deepEqual([output.name, output.datatype, output.shape], ['output', 'FP32', [3, 10]]);
      assertClose(output.data, expected.flat());
    }
  });

  it('refuses a wrong datatype, shape, name or data with 400 BAD_USER_INPUT naming the field, recorded as a refused GraphQL input is', async () => {
    // A licensee: predict checks the licence before it reads the inputs.
    const refusals = await signUp(server);
    const plan = await createPlan(server, ownerAuth(), mlp.model.slug, { predictionQuota: 100 });
    await accept(server, { token: refusals.token }, plan.id);
    const refusalAuth = { token: refusals.token };
    const rows = randomRows(2, 784, 5);
    const tensor = inferRequest(rows).inputs[0]!;
    const cases: [unknown, string][] = [
      [{ inputs: [{ ...tensor, datatype: 'INT32' }] }, 'inputs[0].datatype'],
      [{ inputs: [{ ...tensor, datatype: 'BYTES' }] }, 'inputs[0].datatype'],
      [{ inputs: [{ ...tensor, shape: [2, 783] }] }, 'inputs[0].shape'],
      [{ inputs: [{ ...tensor, shape: [4, 784] }] }, 'inputs[0].data'],
      [{ inputs: [{ ...tensor, name: 'pixels' }] }, 'inputs[0].name'],
      [{ inputs: [{ ...tensor, data: [...rows.flat().slice(1), 'x'] }] }, 'inputs[0].data'],
      [{ inputs: [tensor, tensor] }, 'inputs'],
      [{ inputs: [] }, 'inputs'],
      [{ inputs: [tensor], outputs: [{ name: 'logits' }] }, 'outputs[0].name'],
      [{ inputs: [tensor], id: 7 }, 'id'],
    ];
    for (const [body, field] of cases) {
      const answer = await call('POST', `/v2/models/${mlp.model.slug}/infer`, refusalAuth, body);
      expectOipError(answer, 400, 'BAD_USER_INPUT', field);
    }
    // A value predict itself refuses (beyond float32) is named in the request's terms: row 1, value 0 of its data.
    const huge = { inputs: [{ ...tensor, data: [...rows[0]!, 1e39, ...rows[1]!.slice(1)] }] };
    const answer = await call('POST', `/v2/models/${mlp.model.slug}/infer`, refusalAuth, huge);
    expectOipError(answer, 400, 'BAD_USER_INPUT', 'inputs[0].data[1][0]');
    expectOipError(
      await call('POST', `/v2/models/${mlp.model.slug}/infer`, refusalAuth, '{"inputs": ['),
      400,
      'BAD_REQUEST',
    );
    // Every refusal of the request's tensors is a call of predict's (one BAD_USER_INPUT usage record, nothing
    // billed), as GraphQL's refused inputs are; only the malformed body and the bad id never reached it.
    const records = await server.sql.query(
      'SELECT status, units, billable_units FROM usage_records WHERE consumer_id = $1',
      [refusals.id],
    );
    assert.equal(records.rows.length, cases.length - 1 /* the bad id */ + 1 /* the value beyond float32 */);
    for (const row of records.rows) assert.deepEqual(row, { status: 'BAD_USER_INPUT', units: 0, billable_units: 0 });
  });

  it('authenticates like GraphQL: 401 without credentials, 403 for an API key without PREDICT or a caller without a licence', async () => {
    const request = inferRequest(randomRows(1, 784, 6));
    const path = `/v2/models/${mlp.model.slug}/infer`;
    const anonymous = await call('POST', path, {}, request);
    expectOipError(anonymous, 401, 'UNAUTHENTICATED');
    const readOnly = await createApiKey(server, owner.token, ['READ_USAGE']);
    expectOipError(await call('POST', path, { apiKey: readOnly.secret }, request), 403, 'FORBIDDEN');
    const stranger = await signUp(server);
    const refused = await call('POST', path, { token: stranger.token }, request);
    expectOipError(refused, 403, 'FORBIDDEN');
    assert.equal(refused.body.reason, 'NO_CONTRACT');
    const predictKey = await createApiKey(server, owner.token, ['PREDICT']);
    assert.equal((await call('POST', path, { apiKey: predictKey.secret }, request)).status, 200);
  });

  it('matches GraphQL predict on the same input and meters it identically; quota and idempotency hold', async () => {
    const plan = await createPlan(server, ownerAuth(), mlp.model.slug, {
      predictionQuota: 6,
      pricePerPrediction: '0.5',
    });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const rows = randomRows(2, 784, 8);
    const consumerAuth = { token: consumer.token };

    const oip = await call('POST', `/v2/models/${mlp.model.slug}/infer`, consumerAuth, inferRequest(rows));
    assert.equal(oip.status, 200, JSON.stringify(oip.body));
    assert.equal(oip.body.parameters.contract_id, contract.id);
    const gql = await server.gql(PREDICT, { input: { model: mlp.model.slug, inputs: rows } }, consumerAuth);
    assert.equal(gql.errors, undefined, JSON.stringify(gql.errors));
    const graphqlValues = gql.data!.predict.outputs.flatMap((o: any) => o.values);
    assert.deepEqual(oip.body.outputs[0].data, graphqlValues);

    const records = async () =>
      (
        await server.sql.query(
          `SELECT status, units, billable_units, unit_price::text, currency, contract_id, model_id, model_version_id, api_key_id
             FROM usage_records WHERE consumer_id = $1 ORDER BY id`,
          [consumer.id],
        )
      ).rows;
    const [first, second] = await records();
    assert.deepEqual(first, second);
    assert.equal(first.status, 'OK');
    assert.equal(first.billable_units, 2);
    const used = async () =>
      (await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id])).rows[0]
        .predictions_used;
    assert.equal(await used(), 4);

    // Idempotency-Key is predict's requestId: the retry is answered from the first call, not billed again.
    const key = { 'idempotency-key': 'order-7' };
    const once = await call(
      'POST',
      `/v2/models/${mlp.model.slug}/infer`,
      consumerAuth,
      inferRequest(rows, { id: 'a' }),
      key,
    );
    const again = await call(
      'POST',
      `/v2/models/${mlp.model.slug}/infer`,
      consumerAuth,
      inferRequest(rows, { id: 'b' }),
      key,
    );
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.parameters.prediction_id, once.body.parameters.prediction_id);
    assert.deepEqual([once.body.id, again.body.id], ['a', 'b']);
    assert.deepEqual(again.body.outputs, once.body.outputs);
    assert.equal(await used(), 6);
    const conflict = await call(
      'POST',
      `/v2/models/${mlp.model.slug}/infer`,
      consumerAuth,
      inferRequest(randomRows(2, 784, 9)),
      key,
    );
    expectOipError(conflict, 409, 'CONFLICT');

    const over = await call(
      'POST',
      `/v2/models/${mlp.model.slug}/infer`,
      consumerAuth,
      inferRequest(randomRows(1, 784, 10)),
    );
    expectOipError(over, 429, 'QUOTA_EXCEEDED');
    assert.deepEqual([over.body.used, over.body.quota], [6, 6]);
    assert.equal(await used(), 6);
  });

  it("answers a licence's rate limit with 429 RATE_LIMITED and Retry-After", async () => {
    const plan = await createPlan(server, ownerAuth(), mlp.model.slug, { rateLimitPerMinute: 1 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    const path = `/v2/models/${mlp.model.slug}/infer`;
    const request = inferRequest(randomRows(1, 784, 12));
    assert.equal((await call('POST', path, { token: consumer.token }, request)).status, 200);
    const limited = await call('POST', path, { token: consumer.token }, request);
    expectOipError(limited, 429, 'RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal(limited.body.retryAfter, Number(limited.headers.get('retry-after')));
  });

  it('takes BYTES (one string per instance) for a text model, as GraphQL takes raw text', async () => {
    const vocabulary = ['<pad>', '<unk>', 'free', 'money', 'meeting', 'tomorrow'];
    const tfModel = buildTextClassifier(vocabulary.length, 6);
    const artifact = await uploadWithTfjs(server, tfModel, ownerAuth());
    const model = await createModel(server, ownerAuth(), { task: 'TEXT_CLASSIFICATION' });
    await publish(server, ownerAuth(), {
      model: model.slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: {
        input: {
          shape: [6],
          dtype: 'float32',
          preprocessing: { kind: 'text', vocabulary, maxLength: 6, lowercase: true },
        },
        output: { kind: 'classification', labels: ['ham', 'spam'] },
      },
    });
    const meta = await call('GET', `/v2/models/${model.slug}`);
    assert.deepEqual(meta.body.inputs, [{ name: 'input', datatype: 'BYTES', shape: [-1] }]);
    const texts = ['FREE money', 'meeting tomorrow'];
    const answer = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), {
      inputs: [{ name: 'input', shape: [2], datatype: 'BYTES', data: texts }],
    });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const gql = await server.gql(PREDICT, { input: { model: model.slug, inputs: texts } }, ownerAuth());
    assert.deepEqual(
      answer.body.outputs[0].data,
      gql.data!.predict.outputs.flatMap((o: any) => o.values),
    );
    const numbers = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), {
      inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', data: [3] }],
    });
    expectOipError(numbers, 400, 'BAD_USER_INPUT', 'inputs[0].data');
  });

  it('serves a model of named inputs and outputs: metadata, infer, a chosen output', async () => {
    const tfModel = buildTwoHeaded(31);
    const artifact = await uploadWithTfjs(server, tfModel, ownerAuth());
    const model = await createModel(server, ownerAuth(), { task: 'REGRESSION' });
    await publish(server, ownerAuth(), {
      model: model.slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: TWO_HEADED_SIGNATURE,
    });
    const meta = await call('GET', `/v2/models/${model.slug}`);
    assert.deepEqual(meta.body.inputs, [
      { name: 'a', datatype: 'FP32', shape: [-1, 32] },
      { name: 'b', datatype: 'FP32', shape: [-1, 16] },
    ]);
    assert.deepEqual(meta.body.outputs, [
      { name: 'kind', datatype: 'FP32', shape: [-1, 3] },
      { name: 'score', datatype: 'FP32', shape: [-1, 1] },
    ]);
    const a = randomRows(2, 32, 1);
    const b = randomRows(2, 16, 2);
    const [kind, score] = expectedTwoHeaded(tfModel, a, b);
    const inputs = [
      { name: 'b', shape: [2, 16], datatype: 'FP32', data: b.flat() },
      { name: 'a', shape: [2, 32], datatype: 'FP64', data: a },
    ];
    const all = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), { inputs });
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(
      all.body.outputs.map((o: any) => [o.name, o.shape]),
      [
        ['kind', [2, 3]],
        ['score', [2, 1]],
      ],
    );
    assertClose(all.body.outputs[0].data, kind.flat());
    assertClose(all.body.outputs[1].data, score.flat());
    const chosen = await call('POST', `/v2/models/${model.slug}/versions/1.0.0/infer`, ownerAuth(), {
      inputs,
      outputs: [{ name: 'score' }],
    });
    assert.deepEqual(
      chosen.body.outputs.map((o: any) => o.name),
      ['score'],
    );
    const missing = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), { inputs: [inputs[0]] });
    expectOipError(missing, 400, 'BAD_USER_INPUT', 'inputs');
    const uneven = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), {
      inputs: [inputs[0], { ...inputs[1], shape: [1, 32], data: a[0] }],
    });
    expectOipError(uneven, 400, 'BAD_USER_INPUT', 'inputs[1].shape');
  });

  it("standardises a tabular model's rows as GraphQL standardises its feature objects", async () => {
    const features = [
      { name: 'age', mean: 40, std: 10 },
      { name: 'income', mean: 50_000, std: 20_000 },
      { name: 'children' },
    ];
    const { model } = await publishedTabular(server, ownerAuth(), features);
    const meta = await call('GET', `/v2/models/${model.slug}`);
    assert.deepEqual(meta.body.inputs, [{ name: 'input', datatype: 'FP32', shape: [-1, 3] }]);
    const rows = [
      [50, 90_000, 2],
      [23, 31_000, 0],
    ];
    const gql = await server.gql(
      PREDICT,
      { input: { model: model.slug, inputs: rows.map(([age, income, children]) => ({ age, income, children })) } },
      ownerAuth(),
    );
    assert.equal(gql.errors, undefined, JSON.stringify(gql.errors));
    const oip = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), {
      inputs: [{ name: 'input', shape: [2, 3], datatype: 'FP64', data: rows.flat() }],
    });
    assert.equal(oip.status, 200, JSON.stringify(oip.body));
    assertClose(
      oip.body.outputs[0].data,
      gql.data!.predict.outputs.flatMap((o: any) => o.values),
    );
    // A feature's refusal names the request's row and the feature.
    const huge = await call('POST', `/v2/models/${model.slug}/infer`, ownerAuth(), {
      inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP64', data: [50, 1e39, 2] }],
    });
    expectOipError(huge, 400, 'BAD_USER_INPUT', 'inputs[0].data[0].income');
  });

  it('answers every output for an empty `outputs` list, as for none', async () => {
    const rows = randomRows(1, 784, 9);
    const answer = await call(
      'POST',
      `/v2/models/${mlp.model.slug}/infer`,
      ownerAuth(),
      inferRequest(rows, { outputs: [] }),
    );
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(
      answer.body.outputs.map((o: any) => [o.name, o.shape]),
      [['output', [1, 10]]],
    );
  });

  it('refuses text PostgreSQL cannot store in a model name, version or contract with 400, not 500', async () => {
    const request = inferRequest(randomRows(1, 784, 10));
    const cases: [string, 'GET' | 'POST', unknown, string][] = [
      [`/v2/models/a%00b`, 'GET', undefined, 'name'],
      [`/v2/models/${mlp.model.slug}/versions/%00/ready`, 'GET', undefined, 'version'],
      [`/v2/models/a%00b/infer`, 'POST', request, 'name'],
      [`/v2/models/${mlp.model.slug}/versions/1.0.0%00/infer`, 'POST', request, 'version'],
      [
        `/v2/models/${mlp.model.slug}/infer`,
        'POST',
        { ...request, parameters: { contract_id: 'c\u0000' } },
        'parameters.contract_id',
      ],
    ];
    for (const [path, method, body, field] of cases) {
      expectOipError(await call(method, path, ownerAuth(), body), 400, 'BAD_USER_INPUT', field);
    }
  });

  const JSON_TYPE = { 'content-type': 'application/json' };

  it('closes the connection after refusing a body it did not read (too large, or refused before reading)', async () => {
    const path = `/v2/models/${mlp.model.slug}/infer`;
    const tooLarge = await unsentBody(server, path, { ...JSON_TYPE, ...authHeaders(ownerAuth()) });
    assert.equal(tooLarge.statusCode, 413);
    assert.equal(tooLarge.headers.connection, 'close');
    const anonymous = await unsentBody(server, path, JSON_TYPE);
    assert.equal(anonymous.statusCode, 401);
    assert.equal(anonymous.headers.connection, 'close');
    const latin1 = await unsentBody(server, path, {
      ...authHeaders(ownerAuth()),
      'content-type': 'application/json; charset=latin1',
    });
    assert.equal(latin1.statusCode, 415);
    assert.equal(latin1.headers.connection, 'close');
  });

  it('reads the body as GraphQL does: a byte-order mark is dropped, a top-level scalar is malformed', async () => {
    const request = JSON.stringify(inferRequest(randomRows(1, 784, 11)));
    const bom = await call('POST', `/v2/models/${mlp.model.slug}/infer`, ownerAuth(), `\uFEFF${request}`);
    assert.equal(bom.status, 200, JSON.stringify(bom.body));
    expectOipError(
      await call('POST', `/v2/models/${mlp.model.slug}/infer`, ownerAuth(), '"inputs"'),
      400,
      'BAD_REQUEST',
    );
  });
});
