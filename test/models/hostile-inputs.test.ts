// Issue 9 rows 3, 5, 9, 10 and 16: predict inputs and outputs chosen by an attacker, over real HTTP against
// real tfjs models. Each test reproduces the attack as the issue describes it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import {
  assertClose,
  createModel,
  expectedOutputs,
  PREDICT,
  publish,
  publishedMlp,
  publishedTabular,
  randomRows,
  uploadWithTfjs,
} from '../support/models.js';

/** A grey PNG whose pixels are a gradient (or noise, which does not compress), as base64. */
function greyPng(width: number, height: number, pixel = (p: number) => (p * 7) % 256): string {
  const png = new PNG({ width, height });
  for (let p = 0; p < width * height; p++) {
    const value = pixel(p);
    png.data[4 * p] = value;
    png.data[4 * p + 1] = value;
    png.data[4 * p + 2] = value;
    png.data[4 * p + 3] = 255;
  }
  return PNG.sync.write(png).toString('base64');
}

/** A GraphQL body sent as text, for variables JSON.stringify cannot write (too deep) or JSON cannot hold. */
async function rawPredict(server: TestServer, token: string, inputJson: string) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: `{"query": ${JSON.stringify(PREDICT)}, "variables": {"input": ${inputJson}}}`,
  });
  return { status: response.status, ...((await response.json()) as { data?: any; errors?: any[] }) };
}

describe('hostile predict inputs and outputs (issue 9)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  const predict = (model: string, inputs: unknown, extra: Record<string, unknown> = {}, token = owner.token) =>
    server.gql(PREDICT, { input: { model, inputs, ...extra } }, { token });

  describe('row 3: images are bounded before decoding and decoded off the event loop', () => {
    let slug: string;
    let tfModel: tf.LayersModel;
    before(async () => {
      const mlp = await publishedMlp(server, { token: owner.token }, { sizes: [784, 16, 10] });
      tfModel = mlp.tfModel;
      slug = mlp.model.slug;
      await publish(
        server,
        { token: owner.token },
        {
          model: slug,
          version: '2.0.0',
          artifactId: mlp.artifact.id,
          signature: {
            input: {
              shape: [784],
              dtype: 'float32',
              preprocessing: { kind: 'image', height: 28, width: 28, channels: 1, scaling: 'unit' },
            },
            output: { kind: 'values', size: 10 },
          },
        },
      );
    });

    it('refuses a 4096×4096 PNG from its header, before decoding it', async () => {
      const huge = greyPng(4096, 4096);
      // Headers are read in the preprocessing threads: the first call starts them (a second or so under tsx).
      assert.equal((await predict(slug, [greyPng(28, 28)], { version: '2.0.0' })).errors, undefined);
      const started = performance.now();
      const error = expectError(await predict(slug, [huge, huge], { version: '2.0.0' }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.inputs[0]');
      assert.match(error.message, /4096×4096; at most 4194304 pixels/);
      assert.ok(performance.now() - started < 1000, 'refused without decoding');
    });

    it('refuses a call whose images exceed the per-call pixel budget', async () => {
      const large = greyPng(2048, 2048); // 4 Mpx: allowed alone; 9 of them exceed 32 Mpx.
      const error = expectError(await predict(slug, Array(9).fill(large), { version: '2.0.0' }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.inputs[8]');
      assert.match(error.message, /at most 33554432 pixels in all/);
    });

    it('refuses a call whose PNG files exceed the per-call byte budget (4 MiB), within the body limit', async () => {
      // Each image stays within PREDICT_MAX_STRING_LENGTH (100,000 characters of base64); 70 of them do not.
      let seed = 1;
      const noise = greyPng(140, 140, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24) & 255);
      assert.ok(noise.length < 100_000);
      const fileBytes = Math.ceil((noise.length * 3) / 4);
      assert.ok(noise.length * 70 < 8 * 1024 * 1024, 'the body fits BODY_LIMIT_BYTES');
      const firstOver = Math.floor((4 * 1024 * 1024) / fileBytes);
      assert.ok(firstOver < 70, 'seventy of them exceed 4 MiB');
      const error = expectError(await predict(slug, Array(70).fill(noise), { version: '2.0.0' }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, `input.inputs[${firstOver}]`);
      assert.match(error.message, /at most 4194304 bytes in all/);
    });

    it('keeps the event loop free while 16 one-megapixel PNGs decode, and answers them correctly', async () => {
      const image = greyPng(1024, 1024);
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      const res = await predict(slug, Array(16).fill(image), { version: '2.0.0' });
      delay.disable();
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      // Decoding on the event loop blocked it for ~16 × 40 ms; a worker hop costs a few milliseconds.
      const maxStallMs = delay.max / 1e6;
      // Inline decoding stalled it ~600 ms here; a loaded 2-core machine can add GC pauses, hence the margin.
      assert.ok(maxStallMs < 350, `the event loop stalled for ${maxStallMs.toFixed(0)} ms`);
      // The same pixels the bilinear resize computes here give the same answer.
      const { decodeImage } = await import('../../src/preprocessing/image.js');
      const pixels = Array.from(await decodeImage(image, { height: 28, width: 28, channels: 1, scaling: 'unit' }));
      const expected = expectedOutputs(tfModel, [pixels], [784])[0]!;
      for (const output of res.data!.predict.outputs) assertClose(output.values, expected);
    });
  });

  describe('row 5: token ids outside the Embedding never reach a merged batch', () => {
    const vocabulary = ['<pad>', '<unk>', ...Array.from({ length: 998 }, (_, i) => `w${i}`)];
    let slug: string;
    let artifactId: string;
    before(async () => {
      const model = tf.sequential({
        layers: [
          tf.layers.embedding({ inputDim: 1000, outputDim: 4, inputLength: 8 }),
          tf.layers.globalAveragePooling1d(),
          tf.layers.dense({ units: 2, activation: 'softmax' }),
        ],
      });
      artifactId = (await uploadWithTfjs(server, model, { token: owner.token })).id;
      slug = (await createModel(server, { token: owner.token }, { task: 'TEXT_CLASSIFICATION' })).slug;
    });
    const textSignature = (words: string[]) => ({
      input: {
        shape: [8],
        dtype: 'float32',
        preprocessing: { kind: 'text', vocabulary: words, maxLength: 8, lowercase: true },
      },
      output: { kind: 'classification', labels: ['ham', 'spam'] },
    });

    it('records the Embedding range at publish and refuses a vocabulary larger than it', async () => {
      const tooLarge = await server.gql(
        `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
        {
          input: {
            model: slug,
            version: '0.9.0',
            artifactId,
            watermark: false,
            signature: textSignature([...vocabulary, 'extra']),
          },
        },
        { token: owner.token },
      );
      const error = expectError(tooLarge, 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.signature');
      assert.match(error.message, /1001 tokens .* below 1000/);
      const version = await publish(
        server,
        { token: owner.token },
        { model: slug, version: '1.0.0', artifactId, signature: textSignature(vocabulary) },
      );
      assert.equal(version.signature.input.embeddingInputDim, 1000);
    });

    it("answers out-of-range ids with BAD_USER_INPUT at their path, and other callers' calls all succeed", async () => {
      const attack = [[1, 2, 3, 99999, 0, 0, 0, 0]];
      const attacks = Array.from({ length: 20 }, () => predict(slug, attack));
      const good = Array.from({ length: 40 }, (_, i) =>
        predict(slug, [`w${i} w${i + 1} hello`, [5, 6, 7, 0, 0, 0, 0, 0]]),
      );
      for (const res of await Promise.all(attacks)) {
        const error = expectError(res, 'BAD_USER_INPUT');
        assert.equal(error.extensions!.field, 'input.inputs[0][3]');
        assert.match(error.message, /token id, an integer from 0 to 999/);
      }
      for (const res of await Promise.all(good)) assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      for (const [inputs, field] of [
        [[[-1, 0, 0, 0, 0, 0, 0, 0]], 'input.inputs[0][0]'],
        [[[0, 0, 2.5, 0, 0, 0, 0, 0]], 'input.inputs[0][2]'],
      ] as const) {
        assert.equal(expectError(await predict(slug, inputs), 'BAD_USER_INPUT').extensions!.field, field);
      }
    });

    it('finds the Embedding a functional model feeds its input to', async () => {
      const input = tf.input({ shape: [4] });
      const embedded = tf.layers.embedding({ inputDim: 50, outputDim: 3 }).apply(input) as tf.SymbolicTensor;
      const flat = tf.layers.flatten().apply(embedded) as tf.SymbolicTensor;
      const output = tf.layers.dense({ units: 2 }).apply(flat) as tf.SymbolicTensor;
      const model = tf.model({ inputs: input, outputs: output });
      const artifact = await uploadWithTfjs(server, model, { token: owner.token });
      const target = await createModel(server, { token: owner.token }, { task: 'REGRESSION' });
      const version = await publish(
        server,
        { token: owner.token },
        { model: target.slug, version: '1.0.0', artifactId: artifact.id },
      );
      assert.equal(version.signature.input.embeddingInputDim, 50);
      assert.equal((await predict(target.slug, [[49, 0, 1, 2]])).errors, undefined);
      const error = expectError(await predict(target.slug, [[50, 0, 1, 2]]), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.inputs[0][0]');
    });
  });

  describe('row 10: float32 range, and a non-finite answer is an unbilled MODEL_ERROR', () => {
    it('refuses numbers that are Infinity in float32, raw or standardised, at their path', async () => {
      const mlp = await publishedMlp(server, { token: owner.token });
      const row = randomRows(1, 784, 4)[0]!;
      const error = expectError(await predict(mlp.model.slug, [row, [1e39, ...row.slice(1)]]), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.inputs[1][0]');
      assert.match(error.message, /float32/);

      const { model: target } = await publishedTabular(server, { token: owner.token }, [
        { name: 'age' },
        { name: 'tiny', mean: 0, std: 1e-300 },
      ]);
      const raw = expectError(await predict(target.slug, [{ age: 1e39, tiny: 0 }]), 'BAD_USER_INPUT');
      assert.equal(raw.extensions!.field, 'input.inputs[0].age');
      const standardised = expectError(await predict(target.slug, [{ age: 1, tiny: 1 }]), 'BAD_USER_INPUT');
      assert.equal(standardised.extensions!.field, 'input.inputs[0].tiny');
      assert.match(standardised.message, /standardised/);
      assert.equal((await predict(target.slug, [{ age: 1, tiny: 0 }])).errors, undefined);
    });

    it('fails a call whose model answers Infinity with MODEL_ERROR and bills nothing', async () => {
      // Finite float32 weights and inputs whose product overflows float32: 1e30 × 1e30.
      const overflowing = tf.sequential({
        layers: [
          tf.layers.dense({
            units: 2,
            inputShape: [1],
            useBias: false,
            kernelInitializer: tf.initializers.constant({ value: 1e30 }),
          }),
        ],
      });
      const artifact = await uploadWithTfjs(server, overflowing, { token: owner.token });
      const target = await createModel(server, { token: owner.token }, { task: 'REGRESSION' });
      await publish(server, { token: owner.token }, { model: target.slug, version: '1.0.0', artifactId: artifact.id });
      const plan = await createPlan(server, { token: owner.token }, target.slug, {
        predictionQuota: 100,
        pricePerPrediction: '0.02',
      });
      const consumer = await signUp(server);
      const contract = await accept(server, { token: consumer.token }, plan.id);

      const failed = await predict(target.slug, [[1e30], [1e30], [1e30], [1e30], [1e30]], {}, consumer.token);
      const error = expectError(failed, 'MODEL_ERROR');
      assert.match(error.message, /non-finite/);
      assert.equal((await predict(target.slug, [[1], [2]], {}, consumer.token)).errors, undefined);

      const used = await server.gql('query { myContracts { id predictionsUsed } }', {}, { token: consumer.token });
      assert.equal(used.data!.myContracts[0].predictionsUsed, 2);
      const records = await server.sql.query(
        'SELECT status, billable_units FROM usage_records WHERE contract_id = $1 ORDER BY id',
        [contract.id],
      );
      assert.deepEqual(
        records.rows.map((r) => [r.status, r.billable_units]),
        [
          ['MODEL_ERROR', 0],
          ['OK', 2],
        ],
      );
    });
  });

  describe('row 9: output values per call are budgeted (PREDICT_MAX_OUTPUT_VALUES, default 25,000)', () => {
    it("refuses at publish the issue's Dense(units: 100000): one instance must fit in a call", async () => {
      const wide = tf.sequential({ layers: [tf.layers.dense({ units: 100_000, inputShape: [1] })] });
      const artifact = await uploadWithTfjs(server, wide, { token: owner.token });
      const target = await createModel(server, { token: owner.token }, { task: 'REGRESSION' });
      const res = await server.gql(
        `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
        { input: { model: target.slug, version: '1.0.0', artifactId: artifact.id, watermark: false } },
        { token: owner.token },
      );
      const error = expectError(res, 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.artifactId');
      assert.match(error.message, /100000 values per instance; at most 25000/);
    });

    it('refuses 256 instances of a 1,000-output model before inference, saying how many fit', async () => {
      const wide = tf.sequential({ layers: [tf.layers.dense({ units: 1000, inputShape: [1] })] });
      const artifact = await uploadWithTfjs(server, wide, { token: owner.token });
      const target = await createModel(server, { token: owner.token }, { task: 'REGRESSION' });
      await publish(server, { token: owner.token }, { model: target.slug, version: '1.0.0', artifactId: artifact.id });
      const rows = Array.from({ length: 256 }, (_, i) => [i]);
      const error = expectError(await predict(target.slug, rows), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.inputs');
      assert.match(error.message, /at most 25 instances fit/);
      const res = await predict(target.slug, rows.slice(0, 25));
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      assert.equal(res.data!.predict.outputs.length, 25);
    });
  });

  describe('row 16: inputs nested 5,000 levels deep', () => {
    it('are BAD_USER_INPUT, with or without an idempotency key, and the server still answers', async () => {
      const mlp = await publishedMlp(server, { token: owner.token });
      // 784 numbers under 5,000 levels of single-element arrays: the element count matches the model's input.
      const row = JSON.stringify(randomRows(1, 784, 8)[0]);
      const deep = `${'['.repeat(5000)}${row}${']'.repeat(5000)}`;
      const plain = await rawPredict(server, owner.token, `{"model": "${mlp.model.slug}", "inputs": ${deep}}`);
      assert.equal(plain.errors![0].extensions.code, 'BAD_USER_INPUT', JSON.stringify(plain.errors));
      assert.equal(plain.errors![0].extensions.field, 'input.inputs[0]');
      assert.match(plain.errors![0].message, /nested deeper than 8 levels/);
      const keyed = await rawPredict(
        server,
        owner.token,
        `{"model": "${mlp.model.slug}", "requestId": "deep-1", "inputs": ${deep}}`,
      );
      assert.equal(keyed.errors![0].extensions.code, 'BAD_USER_INPUT', JSON.stringify(keyed.errors));
      assert.match(keyed.errors![0].extensions.field, /^input\.inputs/);
      // 100,000 levels (200 KB, well within the body limit) take the same path.
      const deeper = `${'['.repeat(100_000)}${row}${']'.repeat(100_000)}`;
      for (const extra of ['', '"requestId": "deep-3", ']) {
        const res = await rawPredict(
          server,
          owner.token,
          `{"model": "${mlp.model.slug}", ${extra}"inputs": ${deeper}}`,
        );
        assert.equal(res.errors![0].extensions.code, 'BAD_USER_INPUT', JSON.stringify(res.errors));
      }
      const rows = randomRows(1, 784, 9);
      // A legal instance may still nest its 784 numbers a few levels deep.
      const nested = [[[rows[0]!]]];
      const res = await predict(mlp.model.slug, [nested], { requestId: 'deep-2' });
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      assertClose(res.data!.predict.outputs[0].values, expectedOutputs(mlp.tfModel, rows, [784])[0]!);
    });
  });
});
