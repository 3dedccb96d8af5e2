// Images as people have them (JPEG, PNG, WebP) on a real pretrained model, the REST raw-image predict route,
// and the signature's input policies (declared range, resize policy) with the warnings given without them.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { createApiKey, expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertClose, createModel, expectedOutputs, PREDICT, publish, publishedMlp } from '../support/models.js';
import { NSFW_LABELS, pretrained, type PretrainedModel } from '../support/pretrained.js';
import { authHeaders, startTestServer, unsentBody, type Credentials, type TestServer } from '../support/server.js';

/** A 300×200 RGB gradient (red across, green down), the kind of photo-sized image a client sends. */
function gradient(width = 300, height = 200) {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      raw.set([Math.round((x * 255) / (width - 1)), Math.round((y * 255) / (height - 1)), 96], (y * width + x) * 3);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

/** Uploads a converted model's files as a client does: multipart, one part per file, named by its file name. */
async function uploadFiles(server: TestServer, model: PretrainedModel, auth: Credentials): Promise<string> {
  const form = new FormData();
  const files = ['model.json', ...model.modelJson.weightsManifest.flatMap((group) => group.paths)];
  for (const file of files) form.append(file, new Blob([await readFile(path.join(model.dir, file))]), file);
  const response = await fetch(`${server.origin}/v1/artifacts`, {
    method: 'POST',
    headers: authHeaders(auth),
    body: form,
  });
  assert.equal(response.status, 201, await response.clone().text());
  return ((await response.json()) as { id: string }).id;
}

/** The model as tfjs loads it from the same files, in this process. */
async function loadDirectly(model: PretrainedModel): Promise<tf.LayersModel> {
  const shards = model.modelJson.weightsManifest.flatMap((group) => group.paths);
  const weightData = Buffer.concat(await Promise.all(shards.map((shard) => readFile(path.join(model.dir, shard)))));
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: model.modelJson.modelTopology as tf.io.ModelJSON['modelTopology'],
      weightSpecs: model.modelJson.weightsManifest.flatMap((group) => group.weights) as tf.io.WeightsManifestEntry[],
      weightData: new Uint8Array(weightData).buffer,
    }),
  );
}

/** A GraphQL predict with the whole response body, extensions included. */
async function predictRaw(server: TestServer, input: Record<string, unknown>, auth: Credentials) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(auth) },
    body: JSON.stringify({ query: PREDICT, variables: { input } }),
  });
  return (await response.json()) as {
    data?: { predict: any } | null;
    errors?: { message: string; extensions: Record<string, any> }[];
    extensions?: { warnings?: string[] };
  };
}

/** The REST image route; `query` as URL parameters, the body sent as `type`. */
async function predictImage(
  server: TestServer,
  route: string,
  body: Uint8Array,
  type: string,
  auth: Credentials,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${server.origin}${route}`, {
    method: 'POST',
    headers: { 'content-type': type, ...authHeaders(auth), ...headers },
    body,
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

describe('images: a JPEG on a real pretrained model (MobileNetV2)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let expected: number[];
  let jpeg: Buffer;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    const model = await pretrained('mobilenetV2');
    const artifactId = await uploadFiles(server, model, { token: owner.token });
    slug = (await createModel(server, { token: owner.token })).slug;
    await publish(
      server,
      { token: owner.token },
      {
        model: slug,
        version: '1.0.0',
        artifactId,
        signature: {
          input: {
            shape: [224, 224, 3],
            dtype: 'float32',
            preprocessing: { kind: 'image', height: 224, width: 224, channels: 3, scaling: 'unit' },
          },
          output: { kind: 'classification', labels: NSFW_LABELS },
        },
      },
    );
    jpeg = await gradient().jpeg({ quality: 90 }).toBuffer();
    // The documented way, run here: sharp decodes to RGB, tfjs resizes bilinearly with half-pixel centres
    // (TensorFlow's resize_bilinear, half_pixel_centers) and scales by 1/255.
    const { data, info } = await sharp(jpeg).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const direct = await loadDirectly(model);
    expected = tf.tidy(() => {
      const pixels = tf.tensor3d(Float32Array.from(data), [info.height, info.width, 3]);
      const input = tf.image.resizeBilinear(pixels, [224, 224], false, true).div(255).expandDims(0);
      return Array.from((direct.predict(input) as tf.Tensor).dataSync());
    });
    direct.dispose();
  });
  after(() => server.close());

  it('answers a base64 JPEG (GraphQL) as tfjs does on the decoded pixels, and warns of the stretch', async () => {
    const res = await predictRaw(server, { model: slug, inputs: [jpeg.toString('base64')] }, { token: owner.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const [output] = res.data!.predict.outputs;
    assertClose(output.values, expected, 1e-4);
    assert.equal(output.label, NSFW_LABELS[expected.indexOf(Math.max(...expected))]);
    assert.deepEqual(res.extensions?.warnings, [
      "input.inputs[0]: image resized from 300×200 to 224×224, aspect ratio not kept; the model's signature declares no resize policy",
    ]);
  });

  it('answers the same JPEG sent raw to the REST route, and a WebP and a PNG of it alike', async () => {
    const raw = await predictImage(server, `/v1/models/${slug}/versions/1.0.0/predict`, jpeg, 'image/jpeg', {
      token: owner.token,
    });
    assert.equal(raw.status, 200, JSON.stringify(raw.body));
    assertClose(raw.body.outputs[0].values, expected, 1e-4);
    assert.equal(raw.body.modelVersion.version, '1.0.0');
    assert.equal(raw.body.warnings.length, 1);
    // Lossless re-encodings of the decoded pixels give the same answer.
    const decoded = sharp(await sharp(jpeg).removeAlpha().raw().toBuffer(), {
      raw: { width: 300, height: 200, channels: 3 },
    });
    for (const [bytes, type] of [
      [await decoded.clone().png().toBuffer(), 'image/png'],
      [await decoded.clone().webp({ lossless: true }).toBuffer(), 'image/webp'],
    ] as const) {
      const res = await predictImage(server, `/v1/models/${slug}/predict`, bytes, type, { token: owner.token });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assertClose(res.body.outputs[0].values, expected, 1e-4);
    }
  });
});

describe('images: the REST image route', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let consumer: SignedUpUser;
  let slug: string;
  let mlp: Awaited<ReturnType<typeof publishedMlp>>;
  const pixels = Array.from({ length: 16 }, (_, i) => i * 16);
  let png: Buffer;
  before(async () => {
    server = await startTestServer({ PREDICT_MAX_IMAGE_BYTES_PER_CALL: '2048' });
    owner = await signUp(server, { role: 'OWNER' });
    consumer = await signUp(server);
    mlp = await publishedMlp(server, { token: owner.token }, { sizes: [16, 3] });
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
            shape: [16],
            dtype: 'float32',
            preprocessing: { kind: 'image', height: 4, width: 4, channels: 1, scaling: 'unit', resize: 'refuse' },
          },
          output: { kind: 'classification', labels: ['a', 'b', 'c'] },
        },
      },
    );
    png = await sharp(Buffer.from(pixels), { raw: { width: 4, height: 4, channels: 1 } })
      .png()
      .toBuffer();
  });
  after(() => server.close());

  const route = (version = '2.0.0') => `/v1/models/${slug}/versions/${version}/predict`;

  it('needs credentials with the PREDICT scope, and refuses other content types with 415', async () => {
    const anonymous = await predictImage(server, route(), png, 'image/png', {});
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error.code, 'UNAUTHENTICATED');
    const key = await createApiKey(server, owner.token, ['READ_USAGE']);
    const unscoped = await predictImage(server, route(), png, 'image/png', { apiKey: key.secret });
    assert.equal(unscoped.status, 403);
    assert.equal(unscoped.body.error.code, 'FORBIDDEN');
    for (const type of ['application/json', 'image/gif', 'application/octet-stream']) {
      const res = await predictImage(server, route(), png, type, { token: owner.token });
      assert.equal(res.status, 415);
      assert.equal(res.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
    }
    // Refused before the body is read, the connection closes: the server does not receive the rest.
    for (const [headers, status] of [
      [{ 'content-type': 'image/png' }, 401],
      [{ 'content-type': 'image/gif', ...authHeaders({ token: owner.token }) }, 415],
      [{ 'content-type': 'image/png', ...authHeaders({ token: owner.token }) }, 413],
    ] as const) {
      const answer = await unsentBody(server, route(), headers);
      assert.equal(answer.statusCode, status);
      assert.equal(answer.headers.connection, 'close');
    }
  });

  it('refuses a body over PREDICT_MAX_IMAGE_BYTES_PER_CALL (413), bad images and policies (400)', async () => {
    const large = await gradient(64, 64).png().toBuffer();
    assert.ok(large.length > 2048);
    const tooLarge = await predictImage(server, route(), large, 'image/png', { token: owner.token });
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.body.error.code, 'PAYLOAD_TOO_LARGE');
    const corrupt = await predictImage(server, route(), png.subarray(0, 60), 'image/png', { token: owner.token });
    assert.equal(corrupt.status, 400);
    assert.equal(corrupt.body.error.code, 'BAD_USER_INPUT');
    // The signature refuses other sizes: a 1×1 image is not blown up.
    const tiny = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#fff' } })
      .jpeg()
      .toBuffer();
    const refused = await predictImage(server, route(), tiny, 'image/jpeg', { token: owner.token });
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /image is 1×1; this model takes exactly 4×4/);
    // A model that takes numbers does not take images: refused before the file is read.
    const numeric = await predictImage(server, route('1.0.0'), png, 'image/png', { token: owner.token });
    assert.equal(numeric.status, 400);
    assert.equal(numeric.body.error.field, 'body');
    assert.match(numeric.body.error.message, /does not take an image file: its inputs are input \(none\)/);
    const missing = await predictImage(server, `/v1/models/nope-${slug}/predict`, png, 'image/png', {
      token: owner.token,
    });
    assert.equal(missing.status, 404);
    const badTopK = await predictImage(server, `${route()}?topK=many`, png, 'image/png', { token: owner.token });
    assert.equal(badTopK.status, 400);
    // The error body names the field, as GraphQL's extensions do.
    assert.deepEqual(badTopK.body.error, { code: 'BAD_USER_INPUT', message: 'topK must be an integer', field: 'topK' });
  });

  it('refuses text PostgreSQL cannot store in the model, version or contract with 400, not 500', async () => {
    const cases: [string, string][] = [
      [`/v1/models/a%00b/predict`, 'model'],
      [`/v1/models/${slug}/predict?version=%00`, 'version'],
      [`/v1/models/${slug}/versions/2.0.0%00/predict`, 'version'],
      [`/v1/models/${slug}/predict?contract=c%00`, 'contract'],
    ];
    for (const [path, field] of cases) {
      const res = await predictImage(server, path, png, 'image/png', { token: owner.token });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'BAD_USER_INPUT');
      assert.equal(res.body.error.field, field);
    }
  });

  it("keeps an image file's Idempotency-Key apart from a GraphQL input that spells the file's digest", async () => {
    const auth = { token: owner.token };
    const rest = await predictImage(server, route(), png, 'image/png', auth, { 'idempotency-key': 'digest-1' });
    assert.equal(rest.status, 200, JSON.stringify(rest.body));
    const sha256 = createHash('sha256').update(png).digest('hex');
    const gql = await predictRaw(
      server,
      { model: slug, version: '2.0.0', inputs: [{ sha256 }], requestId: 'digest-1' },
      auth,
    );
    assert.equal(gql.errors?.[0]?.extensions.code, 'CONFLICT', JSON.stringify(gql));
  });

  it('predicts as GraphQL does, under the same contract, quota, metering and idempotency', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 3 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const auth = { token: consumer.token };
    const expected = expectedOutputs(mlp.tfModel, [pixels.map((p) => p / 255)], [16])[0]!;

    const rest = await predictImage(server, `/v1/models/${slug}/predict?version=2.0.0&topK=2`, png, 'image/png', auth, {
      'idempotency-key': 'rest-1',
    });
    assert.equal(rest.status, 200, JSON.stringify(rest.body));
    assertClose(rest.body.outputs[0].values, expected);
    assert.equal(rest.body.outputs[0].top.length, 2);
    assert.equal(rest.body.contractId, contract.id);
    assert.equal(rest.body.requestId, 'rest-1');
    assert.deepEqual(rest.body.warnings, []);
    // A retry with its Idempotency-Key is answered from the first call and not counted again; the key with
    // another input (another image, another topK) is a conflict.
    const retry = await predictImage(server, `${route()}?topK=2`, png, 'image/png', auth, {
      'idempotency-key': 'rest-1',
    });
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.id, rest.body.id);
    const negated = await sharp(png).negate().png().toBuffer();
    const conflict = await predictImage(server, `${route()}?topK=2`, negated, 'image/png', auth, {
      'idempotency-key': 'rest-1',
    });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.error.code, 'CONFLICT');

    const gql = await predictRaw(
      server,
      { model: slug, version: '2.0.0', topK: 2, inputs: [png.toString('base64')], requestId: 'gql-1' },
      auth,
    );
    assert.equal(gql.errors, undefined, JSON.stringify(gql.errors));
    assert.deepEqual(gql.data!.predict.outputs, rest.body.outputs);
    await predictImage(server, route(), png, 'image/png', auth);

    const over = await predictImage(server, route(), png, 'image/png', auth);
    assert.equal(over.status, 429);
    assert.equal(over.body.error.code, 'QUOTA_EXCEEDED');

    const { rows } = await server.sql.query(
      `SELECT status, units, billable_units, contract_id, request_id FROM usage_records
        WHERE consumer_id = $1 ORDER BY id`,
      [consumer.id],
    );
    assert.deepEqual(
      rows.map((r) => [r.status, r.units, r.billable_units, r.contract_id === contract.id, r.request_id]),
      [
        ['OK', 1, 1, true, 'rest-1'],
        // Recorded as GraphQL records a conflicting requestId: no units, no contract.
        ['CONFLICT', 0, 0, false, 'rest-1'],
        ['OK', 1, 1, true, 'gql-1'],
        ['OK', 1, 1, true, null],
        ['QUOTA_EXCEEDED', 1, 0, true, null],
      ],
    );
    const used = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    assert.equal(used.rows[0].predictions_used, 3);
  });
});

describe('images: declared ranges and size policies, warnings without them', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let mlp: Awaited<ReturnType<typeof publishedMlp>>;
  const auth = () => ({ token: owner.token });
  const image = { kind: 'image', height: 4, width: 4, channels: 1, scaling: 'unit' };
  const publishWith = (version: string, input: Record<string, unknown>) =>
    publish(server, auth(), {
      model: mlp.model.slug,
      version,
      artifactId: mlp.artifact.id,
      signature: { input: { shape: [16], dtype: 'float32', ...input }, output: { kind: 'values', size: 3 } },
    });
  const predict = (version: string, inputs: unknown) =>
    predictRaw(server, { model: mlp.model.slug, version, inputs }, auth());
  const sixteen = (value: number) => Array<number>(16).fill(value);

  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    mlp = await publishedMlp(server, auth(), { sizes: [16, 3] });
    await publishWith('2.0.0', { preprocessing: image });
    await publishWith('3.0.0', {
      preprocessing: { ...image, resize: 'stretch', minSourceSize: { height: 2, width: 2 } },
    });
    await publishWith('4.0.0', { preprocessing: image, range: { min: 0, max: 1 } });
  });
  after(() => server.close());

  it('refuses a value outside a declared range, naming the instance and the value', async () => {
    const bad = [...sixteen(0.5)];
    bad[5] = 300;
    const res = await predict('4.0.0', [sixteen(0.5), bad]);
    assert.equal(res.errors?.[0]?.extensions.code, 'BAD_USER_INPUT');
    assert.equal(res.errors[0].extensions.field, 'input.inputs[1][5]');
    assert.match(res.errors[0].message, /value 300 is outside the declared range \[0, 1\]/);
    const ok = await predict('4.0.0', [sixteen(0), sixteen(1)]);
    assert.equal(ok.errors, undefined);
    assert.equal(ok.extensions?.warnings, undefined);
  });

  it('accepts pixels 0..255 sent to a unit-scaled model without a range, with a warning', async () => {
    const res = await predict('2.0.0', [sixteen(0.5), [...sixteen(255).slice(1), 0]]);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(res.extensions?.warnings, [
      "input.inputs[1][0] (and 14 more values): value 255 is far outside [0, 1], the range of this model's pixels scaled by 1/255; was the image sent as 0..255? (the model's signature declares no range)",
    ]);
    // Values just outside [0, 1] (augmentation, rounding) are not worth a warning.
    const near = await predict('2.0.0', [sixteen(1.2)]);
    assert.equal(near.extensions?.warnings, undefined);
  });

  it('stretches a tiny image with a warning when no policy is declared, and refuses it under minSourceSize', async () => {
    const tiny = (
      await sharp({ create: { width: 1, height: 1, channels: 3, background: '#fff' } })
        .png()
        .toBuffer()
    ).toString('base64');
    const warned = await predict('2.0.0', [tiny]);
    assert.equal(warned.errors, undefined, JSON.stringify(warned.errors));
    assert.deepEqual(warned.extensions?.warnings, [
      "input.inputs[0]: image resized from 1×1 to 4×4; the model's signature declares no resize policy",
    ]);
    const refused = await predict('3.0.0', [tiny]);
    assert.equal(refused.errors?.[0]?.extensions.field, 'input.inputs[0]');
    assert.match(refused.errors[0].message, /image is 1×1; this model takes images of at least 2×2/);
    // Declared `stretch`: the owner chose it, no warning.
    const eight = (await gradient(8, 4).png().toBuffer()).toString('base64');
    const stretched = await predict('3.0.0', [eight]);
    assert.equal(stretched.errors, undefined, JSON.stringify(stretched.errors));
    assert.equal(stretched.extensions?.warnings, undefined);
  });

  it('refuses malformed policies at publish', async () => {
    const res = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
      {
        input: {
          model: mlp.model.slug,
          version: '9.0.0',
          artifactId: mlp.artifact.id,
          watermark: false,
          signature: {
            input: { shape: [16], dtype: 'float32', preprocessing: image, range: { min: 1, max: 0 } },
            output: { kind: 'values', size: 3 },
          },
        },
      },
      auth(),
    );
    assert.match(expectError(res, 'BAD_USER_INPUT').message, /min must not exceed max/);
    const policy = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
      {
        input: {
          model: mlp.model.slug,
          version: '9.0.1',
          artifactId: mlp.artifact.id,
          watermark: false,
          signature: {
            input: { shape: [16], dtype: 'float32', preprocessing: { ...image, resize: 'crop' } },
            output: { kind: 'values', size: 3 },
          },
        },
      },
      auth(),
    );
    expectError(policy, 'BAD_USER_INPUT');
  });
});
