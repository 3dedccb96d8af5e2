import assert from 'node:assert/strict';
import sharp from 'sharp';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  assertClose,
  buildTwoHeaded,
  createModel,
  expectedTwoHeaded,
  PUBLISH,
  publish,
  randomRows,
  TWO_HEADED_SIGNATURE,
  uploadWithTfjs,
} from '../support/models.js';

const randomInstances = (count: number, seed: number) => {
  const b = randomRows(count, 16, seed + 1);
  return randomRows(count, 32, seed).map((a, i) => ({ a, b: b[i]! }));
};

const PREDICT_NAMED = `mutation Predict($input: PredictInput!) {
  predict(input: $input) { outputs { label values named { name label score top { label score } values } } } }`;

describe('predict: models of several named inputs and outputs', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  const tfModel = buildTwoHeaded(21);
  let artifactId: string;
  let slug: string;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    artifactId = (await uploadWithTfjs(server, tfModel, { token: owner.token })).id;
    slug = (await createModel(server, { token: owner.token }, { task: 'REGRESSION' })).slug;
  });
  after(() => server.close());

  const auth = () => ({ token: owner.token });

  it('publishes the named signature in the model order, and answers every output by name', async () => {
    const version = await publish(server, auth(), {
      model: slug,
      version: '1.0.0',
      artifactId,
      signature: TWO_HEADED_SIGNATURE,
    });
    // Stored in the model's own order (a, b; kind, score), whatever order the owner wrote.
    assert.deepEqual(
      version.signature.inputs.map((i: any) => i.name),
      ['a', 'b'],
    );
    assert.deepEqual(
      version.signature.outputs.map((o: any) => o.name),
      ['kind', 'score'],
    );
    assert.deepEqual(version.labels, []);

    const a = randomRows(4, 32, 5);
    const b = randomRows(4, 16, 6);
    const res = await server.gql(
      PREDICT_NAMED,
      { input: { model: slug, inputs: a.map((row, i) => ({ a: row, b: b[i] })), topK: 2 } },
      auth(),
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const [kind, score] = expectedTwoHeaded(tfModel, a, b);
    res.data!.predict.outputs.forEach((output: any, i: number) => {
      assert.equal(output.label, null);
      assert.deepEqual(
        output.named.map((n: any) => n.name),
        ['kind', 'score'],
      );
      const [k, s] = output.named;
      assertClose(k.values, kind[i]!);
      assertClose(s.values, score[i]!);
      assert.equal(k.label, ['cat', 'dog', 'fox'][kind[i]!.indexOf(Math.max(...kind[i]!))]);
      assert.equal(k.top.length, 2);
      assert.equal(s.label, null);
      assertClose(output.values, [...kind[i]!, ...score[i]!]);
    });
  });

  it('keeps every caller its own answer when concurrent calls share a batch', async () => {
    const calls = Array.from({ length: 6 }, (_, c) => ({
      a: randomRows(c + 1, 32, 40 + c),
      b: randomRows(c + 1, 16, 60 + c),
    }));
    const answers = await Promise.all(
      calls.map(({ a, b }) =>
        server.gql(PREDICT_NAMED, { input: { model: slug, inputs: a.map((row, i) => ({ a: row, b: b[i] })) } }, auth()),
      ),
    );
    answers.forEach((res, c) => {
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const [kind, score] = expectedTwoHeaded(tfModel, calls[c]!.a, calls[c]!.b);
      res.data!.predict.outputs.forEach((output: any, i: number) => {
        assertClose(output.named[0].values, kind[i]!);
        assertClose(output.named[1].values, score[i]!);
      });
    });
  });

  it('names the offending instance and input: missing, unknown, wrong shape, not an object', async () => {
    const predict = (inputs: unknown) => server.gql(PREDICT_NAMED, { input: { model: slug, inputs } }, auth());
    const good = randomInstances(1, 3)[0]!;
    const cases: [unknown, string][] = [
      [[good, { a: good.a }], 'input.inputs[1].b'],
      [[{ ...good, c: [1] }], 'input.inputs[0].c'],
      [[{ ...good, a: [1, 2] }], 'input.inputs[0].a'],
      [[{ ...good, b: [1, 'x', ...good.b.slice(2)] }], 'input.inputs[0].b[1]'],
      [[good.a], 'input.inputs[0]'],
    ];
    for (const [inputs, field] of cases) {
      const error = expectError(await predict(inputs), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field, error.message);
    }
  });

  it('infers a named signature (values outputs) when the owner gives none', async () => {
    const version = await publish(server, auth(), { model: slug, version: '1.1.0', artifactId });
    assert.deepEqual(version.signature, {
      inputs: [
        { name: 'a', shape: [32], dtype: 'float32', preprocessing: { kind: 'none' } },
        { name: 'b', shape: [16], dtype: 'float32', preprocessing: { kind: 'none' } },
      ],
      outputs: [
        { name: 'kind', kind: 'values', size: 3 },
        { name: 'score', kind: 'values', size: 1 },
      ],
    });
  });

  it('refuses labels, the single-tensor form, wrong names and evaluation examples for such a model', async () => {
    const refused = async (input: Record<string, unknown>, field: string, message: RegExp) => {
      const res = await server.gql(
        PUBLISH,
        { input: { model: slug, version: '9.0.0', artifactId, watermark: false, ...input } },
        auth(),
      );
      const error = expectError(res, 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field);
      assert.match(error.message, message);
    };
    await refused({ labels: ['x', 'y', 'z'] }, 'input.labels', /one output/);
    await refused(
      { signature: { input: { shape: [32], dtype: 'float32' }, output: { kind: 'values', size: 3 } } },
      'input.signature',
      /named form/,
    );
    await refused(
      { signature: { ...TWO_HEADED_SIGNATURE, inputs: [{ name: 'x', shape: [32], dtype: 'float32' }] } },
      'input.signature',
      /disagree/,
    );
    await refused(
      { signature: { ...TWO_HEADED_SIGNATURE, outputs: [{ name: 'kind', kind: 'values', size: 3 }] } },
      'input.signature',
      /disagree/,
    );
    await refused(
      { signature: TWO_HEADED_SIGNATURE, watermark: true, evaluation: { inputs: randomInstances(1, 1) } },
      'input.evaluation',
      /one input and one output/,
    );
  });

  it('watermarks such a model (owner mark in its largest dense kernel) and serves the marked copy', async () => {
    const res = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { version watermark { marked } } }`,
      { input: { model: slug, version: '2.0.0', artifactId, signature: TWO_HEADED_SIGNATURE, watermark: true } },
      auth(),
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.equal(res.data!.publishModelVersion.watermark.marked, true);
    const answer = await server.gql(
      PREDICT_NAMED,
      { input: { model: slug, version: '2.0.0', inputs: randomInstances(1, 2) } },
      auth(),
    );
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    assert.equal(answer.data!.predict.outputs[0].named.length, 2);
  });

  it('refuses an image file sent to the REST image route before reading it, naming the inputs', async () => {
    // Bytes that once went through the named-input encoder key by key: a megabyte held the event loop ~0.4 s.
    const body = Buffer.alloc(1024 * 1024, 7);
    const response = await fetch(`${server.origin}/v1/models/${slug}/versions/1.0.0/predict`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', authorization: `Bearer ${owner.token}` },
      body,
    });
    const answer = (await response.json()) as { error: { code: string; message: string; field?: string } };
    assert.equal(response.status, 400, JSON.stringify(answer));
    assert.equal(answer.error.code, 'BAD_USER_INPUT');
    assert.equal(answer.error.field, 'body');
    assert.match(answer.error.message, /does not take an image file: its inputs are a \(none\), b \(none\)/);
  });
});

describe("predict: the per-call image budgets are the call's, across several image inputs", () => {
  // 40 pixels a call: a's 4×8 image (32) and b's 4×4 (16) each fit it, together they do not.
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  const image = (height: number, width: number) =>
    sharp(Buffer.alloc(height * width, 128), { raw: { width, height, channels: 1 } })
      .png()
      .toBuffer();
  before(async () => {
    server = await startTestServer({ PREDICT_MAX_IMAGE_PIXELS_PER_CALL: '40' });
    owner = await signUp(server, { role: 'OWNER' });
    const artifactId = (await uploadWithTfjs(server, buildTwoHeaded(22), { token: owner.token })).id;
    slug = (await createModel(server, { token: owner.token }, { task: 'REGRESSION' })).slug;
    const pixels = (height: number, width: number) => ({ kind: 'image', height, width, channels: 1, scaling: 'unit' });
    await publish(
      server,
      { token: owner.token },
      {
        model: slug,
        version: '1.0.0',
        artifactId,
        signature: {
          ...TWO_HEADED_SIGNATURE,
          inputs: [
            { name: 'a', shape: [32], dtype: 'float32', preprocessing: pixels(4, 8) },
            { name: 'b', shape: [16], dtype: 'float32', preprocessing: pixels(4, 4) },
          ],
        },
      },
    );
  });
  after(() => server.close());

  it('refuses two image inputs whose pixels together exceed PREDICT_MAX_IMAGE_PIXELS_PER_CALL', async () => {
    const a = (await image(4, 8)).toString('base64');
    const b = (await image(4, 4)).toString('base64');
    const auth = { token: owner.token };
    const error = expectError(
      await server.gql(PREDICT_NAMED, { input: { model: slug, inputs: [{ a, b }] } }, auth),
      'BAD_USER_INPUT',
    );
    assert.match(error.message, /\[0\]\.b: image refused: the images of one call may hold at most 40 pixels in all/);
    // Each alone, with the other input's image a quarter the size, fits.
    const small = (await image(2, 2)).toString('base64');
    for (const inputs of [[{ a, b: small }], [{ a: small, b }]]) {
      const res = await server.gql(PREDICT_NAMED, { input: { model: slug, inputs } }, auth);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
  });
});
