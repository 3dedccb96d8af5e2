import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { TEST_BACKEND } from '../support/inference-backend.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  assertClose,
  createModel,
  DIGITS,
  expectedOutputs,
  PREDICT,
  publish,
  publishedMlp,
  publishedTabular,
  randomRows,
  uploadWithTfjs,
  buildTextClassifier,
} from '../support/models.js';

describe('predict: results, inputs, authorization', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let mlp: Awaited<ReturnType<typeof publishedMlp>>;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    mlp = await publishedMlp(server, { token: owner.token });
  });
  after(() => server.close());

  const predict = (
    input: Record<string, unknown>,
    auth: { token?: string; apiKey?: string } = { token: owner.token },
  ) => server.gql(PREDICT, { input: { model: mlp.model.slug, ...input } }, auth);

  it('runs on the inference backend the run asks for (npm run test:native: tensorflow), as /readyz reports', async () => {
    const { inference } = (await (await fetch(`${server.origin}/readyz`)).json()) as { inference: { backend: string } };
    assert.ok(['tensorflow', 'wasm', 'cpu'].includes(inference.backend));
    if (TEST_BACKEND !== 'auto') assert.equal(inference.backend, TEST_BACKEND);
  });

  it("equals tfjs's own model.predict, one output per instance, in order, with top-K labels", async () => {
    const rows = randomRows(5, 784, 11);
    const res = await predict({ inputs: rows, topK: 4, requestId: 'req-1' });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const prediction = res.data!.predict;
    assert.equal(prediction.requestId, 'req-1');
    assert.equal(prediction.modelVersion.version, '1.0.0');
    assert.ok(prediction.latencyMs > 0);
    const expected = expectedOutputs(mlp.tfModel, rows, [784]);
    prediction.outputs.forEach((output: any, i: number) => {
      assertClose(output.values, expected[i]!);
      const best = expected[i]!.indexOf(Math.max(...expected[i]!));
      assert.equal(output.label, DIGITS[best]);
      assert.equal(output.top.length, 4);
      assert.deepEqual(
        output.top.map((t: any) => t.score),
        [...output.top.map((t: any) => t.score)].sort((a: number, b: number) => b - a),
      );
    });
  });

  it('accepts a 28×28 nested instance for a 784-input model', async () => {
    const [row] = randomRows(1, 784, 12);
    const nested = Array.from({ length: 28 }, (_, r) => row!.slice(r * 28, r * 28 + 28));
    const res = await predict({ inputs: [nested] });
    assertClose(res.data!.predict.outputs[0].values, expectedOutputs(mlp.tfModel, [row!], [784])[0]!);
  });

  it('rejects bad inputs with BAD_USER_INPUT and the path of the offending value', async () => {
    const good = randomRows(1, 784, 1)[0]!;
    const cases: [unknown, string, RegExp][] = [
      [[], 'input.inputs', /at least one/],
      ['not a list', 'input.inputs', /list of instances/],
      [[good.slice(1)], 'input.inputs[0]', /784 numbers .* got shape \[783\]/],
      [[[good.slice(0, 392), good.slice(392, 783)]], 'input.inputs[0][1]', /392 elements/],
      [[5], 'input.inputs[0]', /array of 784/],
      [[good, [...good.slice(0, 27), 'x', ...good.slice(28)]], 'input.inputs[1][27]', /finite number/],
      [[good, [...good.slice(0, 5), null, ...good.slice(6)]], 'input.inputs[1][5]', /finite number/],
      [['some text'], 'input.inputs[0]', /numbers, not strings/],
      [[{ a: 1 }], 'input.inputs[0]', /not objects/],
      [Array.from({ length: 257 }, () => good), 'input.inputs', /at most 256/],
    ];
    for (const [inputs, path, message] of cases) {
      const error = expectError(await predict({ inputs }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, path, JSON.stringify(error));
      assert.match(error.message, message);
    }
    // JSON has no NaN or Infinity, but 1e999 parses to Infinity.
    const body = `{"query": ${JSON.stringify(PREDICT)}, "variables": {"input": {"model": "${mlp.model.slug}", "inputs": [[1e999${', 0'.repeat(783)}]]}}}`;
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
      body,
    });
    const json = (await response.json()) as any;
    assert.equal(json.errors[0].extensions.code, 'BAD_USER_INPUT');
    assert.equal(json.errors[0].extensions.field, 'input.inputs[0][0]');
    expectError(await predict({ inputs: [good], topK: 0 }), 'BAD_USER_INPUT');
    expectError(await predict({ inputs: [good], requestId: 'x'.repeat(256) }), 'BAD_USER_INPUT');
    expectError(
      await server.gql(PREDICT, { input: { model: 'no-such-model', inputs: [good] } }, { token: owner.token }),
      'NOT_FOUND',
    );
  });

  it('lets only the owner and admins call a model for now; API keys need the PREDICT scope', async () => {
    const rows = randomRows(1, 784, 3);
    const consumer = await signUp(server);
    const denied = expectError(await predict({ inputs: rows }, { token: consumer.token }), 'FORBIDDEN');
    assert.equal(denied.extensions!.reason, 'NO_CONTRACT');
    expectError(await predict({ inputs: rows }, {}), 'UNAUTHENTICATED');
    const usageKey = await createApiKey(server, owner.token, ['READ_USAGE', 'MANAGE_MODELS']);
    const scopeError = expectError(await predict({ inputs: rows }, { apiKey: usageKey.secret }), 'FORBIDDEN');
    assert.equal(scopeError.extensions!.requiredScope, 'PREDICT');
    const predictKey = await createApiKey(server, owner.token, ['PREDICT']);
    const ok = await predict({ inputs: rows }, { apiKey: predictKey.secret });
    assertClose(ok.data!.predict.outputs[0].values, expectedOutputs(mlp.tfModel, rows, [784])[0]!);
  });

  it('gives every concurrent caller its own rows (batched together)', async () => {
    const batchesBefore = await batchCount(server);
    const rows = randomRows(64, 784, 21);
    const expected = expectedOutputs(mlp.tfModel, rows, [784]);
    const results = await Promise.all(rows.map((row) => predict({ inputs: [row] })));
    results.forEach((res, i) => {
      assert.equal(res.errors, undefined);
      assertClose(res.data!.predict.outputs[0].values, expected[i]!);
    });
    const batches = (await batchCount(server)) - batchesBefore;
    assert.ok(batches < 64, `64 concurrent requests ran in ${batches} batches`);
  });

  it('keeps GraphQL responsive while 64 predicts compute (inference is off the event loop)', async () => {
    // A wide model, so the time goes to inference rather than to parsing request JSON.
    const wide = await publishedMlp(server, { token: owner.token }, { sizes: [784, 2048, 2048, 10], seed: 3 });
    const rows = randomRows(16, 784, 5);
    let finished = 0;
    const predicts = Array.from({ length: 64 }, () =>
      server.gql(PREDICT, { input: { model: wide.model.slug, inputs: rows } }, { token: owner.token }).then((res) => {
        assert.equal(res.errors, undefined, JSON.stringify(res.errors));
        finished += 1;
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    const me = await server.gql('{ me { id } }', {}, { token: owner.token });
    const finishedWhenAnswered = finished;
    await Promise.all(predicts);
    assert.equal(me.data!.me.id, owner.id);
    assert.ok(finishedWhenAnswered < 64, 'the trivial query waited until every predict was done');
  });
});

async function batchCount(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.origin}/metrics`)).text();
  const match = /^mm_predict_batch_size_count(?:\{[^}]*\})? (\d+)/m.exec(text);
  return Number(match?.[1] ?? 0);
}

describe('predict: text, image and tabular models', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  it('tokenises raw strings server-side from the signature', async () => {
    const vocabulary = ['<pad>', '<unk>', 'free', 'money', 'meeting', 'tomorrow', "don't"];
    const model = buildTextClassifier(vocabulary.length, 6);
    const artifact = await uploadWithTfjs(server, model, { token: owner.token });
    const target = await createModel(server, { token: owner.token }, { task: 'TEXT_CLASSIFICATION' });
    await publish(
      server,
      { token: owner.token },
      {
        model: target.slug,
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
      },
    );
    const res = await server.gql(
      PREDICT,
      { input: { model: target.slug, inputs: ['FREE money!!', "Meeting tomorrow? Don't forget"] } },
      { token: owner.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const expected = expectedOutputs(
      model,
      [
        [2, 3, 0, 0, 0, 0],
        [4, 5, 6, 1, 0, 0],
      ],
      [6],
    );
    res.data!.predict.outputs.forEach((o: any, i: number) => assertClose(o.values, expected[i]!));
    // Past 16 K characters a call, texts are tokenised in a worker thread: same ids.
    const long = await server.gql(
      PREDICT,
      { input: { model: target.slug, inputs: [`Free MONEY ${'x '.repeat(10_000)}`, 'meeting'] } },
      { token: owner.token },
    );
    assert.equal(long.errors, undefined, JSON.stringify(long.errors));
    const expectedLong = expectedOutputs(
      model,
      [
        [2, 3, 1, 1, 1, 1],
        [4, 0, 0, 0, 0, 0],
      ],
      [6],
    );
    long.data!.predict.outputs.forEach((o: any, i: number) => assertClose(o.values, expectedLong[i]!));
    const tooLong = expectError(
      await server.gql(
        PREDICT,
        { input: { model: target.slug, inputs: ['x'.repeat(100_001)] } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(tooLong.extensions!.field, 'input.inputs[0]');
  });

  it('decodes base64 PNG images for image models', async () => {
    const mlp = await publishedMlp(server, { token: owner.token }, { sizes: [16, 3] });
    // Republish the same artifact with image preprocessing (4×4 grey, pixels / 255).
    const image = { kind: 'image', height: 4, width: 4, channels: 1, scaling: 'unit' };
    await publish(
      server,
      { token: owner.token },
      {
        model: mlp.model.slug,
        version: '2.0.0',
        artifactId: mlp.artifact.id,
        signature: {
          input: { shape: [16], dtype: 'float32', preprocessing: image },
          output: { kind: 'classification', labels: ['a', 'b', 'c'] },
        },
      },
    );
    const pixels = Array.from({ length: 16 }, (_, i) => i * 16);
    const png = new PNG({ width: 4, height: 4 });
    pixels.forEach((value, i) => png.data.set([value, value, value, 255], i * 4));
    const base64 = PNG.sync.write(png).toString('base64');
    const res = await server.gql(
      PREDICT,
      { input: { model: mlp.model.slug, version: '2.0.0', inputs: [base64, `data:image/png;base64,${base64}`] } },
      { token: owner.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const expected = expectedOutputs(mlp.tfModel, [pixels.map((p) => p / 255)], [16])[0]!;
    res.data!.predict.outputs.forEach((o: any) => assertClose(o.values, expected));
    const broken = expectError(
      await server.gql(
        PREDICT,
        { input: { model: mlp.model.slug, version: '2.0.0', inputs: ['bm90IGEgcG5n'] } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.match(broken.message, /PNG/);
  });

  it('reads tabular objects by feature name, standardised as the signature says', async () => {
    const { tfModel: model, model: target } = await publishedTabular(server, { token: owner.token }, [
      { name: 'age', mean: 40, std: 10 },
      { name: 'income', mean: 50_000, std: 20_000 },
      { name: 'children' },
    ]);
    const res = await server.gql(
      PREDICT,
      { input: { model: target.slug, inputs: [{ age: 50, income: 90_000, children: 2 }, [1, 2, 2]] } },
      { token: owner.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const expected = expectedOutputs(
      model,
      [
        [1, 2, 2],
        [1, 2, 2],
      ],
      [3],
    );
    res.data!.predict.outputs.forEach((o: any, i: number) => {
      assert.equal(o.label, null);
      assertClose(o.values, expected[i]!);
    });
    const missing = expectError(
      await server.gql(
        PREDICT,
        { input: { model: target.slug, inputs: [{ age: 50, income: 1 }] } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(missing.extensions!.field, 'input.inputs[0].children');
    const unknown = expectError(
      await server.gql(
        PREDICT,
        { input: { model: target.slug, inputs: [{ age: 1, income: 1, children: 1, pets: 2 }] } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(unknown.extensions!.field, 'input.inputs[0].pets');
  });
});

describe('predict: overload', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ INFERENCE_MAX_QUEUE: '8', INFERENCE_MAX_BATCH: '8' });
  });
  after(() => server.close());

  it('answers a flood with OVERLOADED for what does not fit, never hanging', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    // Slow enough per batch (a wide model, 8 instances a request) that the queue must fill.
    const { model, tfModel } = await publishedMlp(server, { token: owner.token }, { sizes: [784, 1024, 1024, 10] });
    const rows = randomRows(8, 784, 2);
    const expected = expectedOutputs(tfModel, rows, [784]);
    const results = await Promise.all(
      Array.from({ length: 80 }, () =>
        server.gql(PREDICT, { input: { model: model.slug, inputs: rows } }, { token: owner.token }),
      ),
    );
    const overloaded = results.filter((r) => r.errors?.[0]?.extensions?.code === 'OVERLOADED');
    const ok = results.filter((r) => !r.errors);
    assert.equal(overloaded.length + ok.length, 80);
    assert.ok(overloaded.length > 0, 'some requests must be refused');
    assert.ok(ok.length > 0, 'some requests must be served');
    for (const r of overloaded) assert.equal(r.status, 503);
    for (const r of ok) r.data!.predict.outputs.forEach((o: any, i: number) => assertClose(o.values, expected[i]!));
  });
});
