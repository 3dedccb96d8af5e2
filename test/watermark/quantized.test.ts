// Quantized layers-models (uint8/uint16/float16 weights, as `tensorflowjs_converter --quantize_*` writes them)
// carry owner marks and licensee fingerprints in their own scheme: marked, re-quantized, and decoded from the
// re-quantized weights.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import { quantizeArtifact } from '../../bench/watermark/attacks.js';
import { loadModel, saveArtifact } from '../../bench/watermark/models.js';
import { loadMnistDigits } from '../../demo/datasets.js';
import { seededRandom, shuffle } from '../../demo/random.js';
import { findTensor, tensorEntries } from '../../src/watermark/artifact.js';
import {
  decide,
  decodeMarks,
  deriveMarkKey,
  MARK_BITS,
  markArtifact,
  selectMarkTensor,
  WatermarkError,
  type WeightsArtifact,
} from '../../src/watermark/index.js';
import { initBackend } from '../../src/inference/backend.js';
import { MIN_AGREEMENT } from '../../src/watermark/watermark-service.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { buildMlp, createModel, DIGITS } from '../support/models.js';
import { NSFW_LABELS, pretrained } from '../support/pretrained.js';
import { authHeaders, startTestServer, type Credentials, type TestServer } from '../support/server.js';
import { inputs, mlpArtifact, outputsOf, SECRET } from './support.js';

// The wasm backend, as the server's workers run it: MobileNetV2 on plain JavaScript takes seconds per picture.
before(() => initBackend('wasm'));

const owner = deriveMarkKey(SECRET, 'owner', 'quantized-version');
const licensee = deriveMarkKey(SECRET, 'licensee', 'quantized-contract');

/**
 * The artifact uint8-quantized, its marked kernel then made ternary (−step, 0, +step; 98% zero): the step
 * is about 7 standard deviations of the kernel, too coarse for a mark.
 */
function ternaryKernel(artifact: WeightsArtifact): WeightsArtifact {
  const quantized = quantizeArtifact(artifact, 'uint8');
  const entry = findTensor(tensorEntries(quantized), selectMarkTensor(quantized.modelJson).name);
  const { scale, min } = entry.spec.quantization as { scale: number; min: number };
  const zero = Math.round(-min / scale);
  const random = seededRandom(5);
  const weights = new Uint8Array(quantized.weights);
  for (let i = 0; i < entry.size; i++) {
    const u = random();
    weights[entry.byteOffset + i] = zero + (u < 0.01 ? -1 : u > 0.99 ? 1 : 0);
  }
  return { modelJson: quantized.modelJson, weights };
}

/** Byte ranges of the artifact that differ from `original`'s, by tensor name. */
function changedTensors(artifact: WeightsArtifact, original: WeightsArtifact): string[] {
  return tensorEntries(original)
    .filter(({ byteOffset, byteLength }) => {
      const a = artifact.weights.subarray(byteOffset, byteOffset + byteLength);
      return !Buffer.from(a).equals(original.weights.subarray(byteOffset, byteOffset + byteLength));
    })
    .map((entry) => entry.spec.name);
}

describe('marks on quantized weights', () => {
  for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
    it(`marks ${dtype} weights in ${dtype}: same manifest and size, both marks decode from the stored bytes`, async () => {
      const original = quantizeArtifact(await mlpArtifact(21), dtype);
      const target = selectMarkTensor(original.modelJson).name;
      const published = markArtifact(original, owner);
      const licensed = markArtifact(published, licensee, { reference: original, preserve: [owner] });
      for (const copy of [published, licensed]) {
        assert.deepEqual(copy.modelJson, original.modelJson, 'dtypes, min and scale unchanged');
        assert.equal(copy.weights.byteLength, original.weights.byteLength);
        assert.deepEqual(changedTensors(copy, original), [target]);
        assert.equal(copy.report.bitErrorsAfter, 0);
      }
      assert.ok(published.report.relativeChange < 0.2, `relative change ${published.report.relativeChange}`);
      const verdicts = decide(decodeMarks(licensed, original, [owner, licensee]), 2);
      assert.deepEqual(
        verdicts.map((v) => [v.purpose, v.matchedBits, v.verdict]),
        [
          ['owner', MARK_BITS, 'MATCH'],
          ['licensee', MARK_BITS, 'MATCH'],
        ],
      );
      const ownerOnly = decide(decodeMarks(published, original, [owner, licensee]), 2);
      assert.deepEqual(
        ownerOnly.map((v) => v.verdict),
        ['MATCH', 'NO_MATCH'],
      );
      // Rebuilding a copy gives the same bytes (the rounding is derived from the key).
      assert.deepEqual(markArtifact(original, owner).weights, published.weights);
      // tfjs dequantizes the copy on load; it computes what the original does, within the mark's change.
      const x = inputs(16);
      const before = await outputsOf(original, x);
      const after = await outputsOf(licensed, x);
      after.forEach((value, i) => assert.ok(Math.abs(value - before[i]!) < 0.05, `${dtype}: output ${i}`));
      x.dispose();
    });
  }

  it('refuses a tensor whose uint8 step is too coarse for the mark to survive re-quantization', async () => {
    const ternary = ternaryKernel(await mlpArtifact(22));
    assert.throws(
      () => markArtifact(ternary, owner),
      (error: unknown) =>
        error instanceof WatermarkError &&
        /uint8-quantized with a step of [67]\.\d+σ: too coarse for a mark/.test(error.message),
    );
  });
});

const SIDE = 224;
/** Pictures the publish check runs on the server. */
const EXAMPLES = 32;
/** Of those, the ones each downloaded copy is run on here (MobileNetV2 is slow on a shared machine). */
const CHECKED = 16;

/** Smooth synthetic RGB pictures (waves of varied frequency and phase): 8-bit pixels, row-major. */
function pictures(): Uint8Array[] {
  return Array.from({ length: EXAMPLES }, (_, i) => {
    const rgb = new Uint8Array(SIDE * SIDE * 3);
    const [fy, fx, fz] = [1 + (i % 5), 1 + ((i * 3) % 7), 1 + ((i * 7) % 4)];
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const [u, v] = [y / SIDE, x / SIDE];
        const shade = 0.75 + 0.25 * Math.cos(5 * fz * v - (i % 3) * u);
        for (let c = 0; c < 3; c++) {
          const wave = 0.5 + 0.5 * Math.sin(3 * fy * u + 2 * fx * v + 2.1 * c + i);
          // Multiples of 4 keep each PNG well under the 100,000 characters an input string may take.
          rgb[(y * SIDE + x) * 3 + c] = 4 * Math.round(63 * wave * shade);
        }
      }
    }
    return rgb;
  });
}

function base64Png(rgb: Uint8Array): string {
  const png = new PNG({ width: SIDE, height: SIDE });
  png.data = Buffer.alloc(SIDE * SIDE * 4, 255);
  for (let p = 0; p < SIDE * SIDE; p++) png.data.set(rgb.subarray(3 * p, 3 * p + 3), 4 * p);
  return PNG.sync.write(png, { colorType: 2 }).toString('base64');
}

/** Uploads model.json and weight files as they are, the way tf.io.http sends them. */
async function uploadFiles(server: TestServer, auth: Credentials, files: Record<string, Uint8Array>) {
  const form = new FormData();
  for (const [name, bytes] of Object.entries(files)) form.append(name, new Blob([bytes]), name);
  const response = await fetch(`${server.origin}/v1/artifacts`, {
    method: 'POST',
    headers: authHeaders(auth),
    body: form,
  });
  assert.equal(response.status, 201, await response.clone().text());
  return (await response.json()) as { id: string };
}

/** A version's artifact as served to the caller: model.json and the weights, byte for byte. */
async function download(server: TestServer, versionId: string, auth: Credentials) {
  const get = async (file: string) => {
    const response = await fetch(`${server.origin}/v1/versions/${versionId}/${file}`, { headers: authHeaders(auth) });
    assert.equal(response.status, 200);
    return new Uint8Array(await response.arrayBuffer());
  };
  const modelJson = await get('model.json');
  return {
    modelJson: JSON.parse(Buffer.from(modelJson).toString('utf8')) as tf.io.ModelJSON,
    files: { 'model.json': modelJson, 'model.weights.bin': await get('model.weights.bin') },
  };
}

const VERIFY = `query V($a: ID!) { verifyWatermark(artifactId: $a) { verdict keysTried
  matches { kind contract matchedBits totalBits pValue } } }`;

const weightSpecs = (modelJson: { weightsManifest: { weights: unknown[] }[] }) =>
  modelJson.weightsManifest.flatMap((group) => group.weights);

describe("a real pretrained uint8 MobileNetV2 (nsfwjs's), published with its owner mark", () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let version: { id: string; watermark: Record<string, any> };
  /** The model's files as nsfwjs ships them, which the owner uploads. */
  let uploaded: { modelJson: tf.io.ModelJSON; weights: Uint8Array };
  let images: tf.Tensor4D;
  let originalTop1: number[];

  /**
   * Top-1 classes of `model` on the checked pictures, one picture at a time: the test server shares this
   * thread, and a whole batch would hold it for many seconds.
   */
  async function top1(model: tf.LayersModel): Promise<number[]> {
    const labels: number[] = [];
    for (let i = 0; i < CHECKED; i++) {
      const best = tf.tidy(() => (model.predict(images.slice(i, 1)) as tf.Tensor).argMax(1));
      labels.push((await best.data())[0]!);
      best.dispose();
      await new Promise((resolve) => setImmediate(resolve));
    }
    model.dispose();
    return labels;
  }

  /** What a downloader holds is still the quantized model: same manifest, same size, and it predicts the same. */
  async function assertQuantizedCopy(auth: Credentials) {
    const copy = await download(server, version.id, auth);
    assert.deepEqual(weightSpecs(copy.modelJson), weightSpecs(uploaded.modelJson), 'uint8 with the same min and scale');
    assert.equal(copy.files['model.weights.bin'].byteLength, uploaded.weights.byteLength);
    const labels = await top1(
      await tf.loadLayersModel(`${server.origin}/v1/versions/${version.id}/model.json`, {
        requestInit: { headers: authHeaders(auth) },
      }),
    );
    const agreement = labels.filter((label, i) => label === originalTop1[i]).length / CHECKED;
    assert.ok(agreement >= MIN_AGREEMENT, `top-1 agreement ${agreement}`);
    return copy;
  }

  before(async () => {
    const { dir } = await pretrained('mobilenetV2');
    const modelJson = await readFile(path.join(dir, 'model.json'));
    const parsed = JSON.parse(modelJson.toString('utf8')) as tf.io.ModelJSON;
    const [shard] = parsed.weightsManifest[0]!.paths;
    uploaded = { modelJson: parsed, weights: new Uint8Array(await readFile(path.join(dir, shard!))) };
    const rgb = pictures();
    const pixels = rgb.slice(0, CHECKED).flatMap((picture) => Array.from(picture, (v) => v / 255));
    images = tf.tensor4d(pixels, [CHECKED, SIDE, SIDE, 3]);
    originalTop1 = await top1(await loadModel(uploaded));

    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    const artifact = await uploadFiles(server, owner, { 'model.json': modelJson, [shard!]: uploaded.weights });
    slug = (await createModel(server, owner, { name: 'NSFW classifier' })).slug;
    const res = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id
        watermark { marked tensor margin relativeChange maxChange bits agreement evaluationSamples } } }`,
      {
        input: {
          model: slug,
          version: '1.0.0',
          artifactId: artifact.id,
          signature: {
            input: {
              shape: [SIDE, SIDE, 3],
              dtype: 'float32',
              preprocessing: { kind: 'image', height: SIDE, width: SIDE, channels: 3, scaling: 'unit' },
            },
            output: { kind: 'classification', labels: NSFW_LABELS },
          },
          evaluation: { inputs: rgb.map(base64Png) },
        },
      },
      owner,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    version = res.data!.publishModelVersion;
  });
  after(async () => {
    images?.dispose();
    await server?.close();
  });

  it('marks the uint8 weights and measures the cost on the re-quantized model', () => {
    const report = version.watermark;
    assert.equal(report.marked, true);
    assert.equal(report.bits, 256);
    assert.equal(report.tensor, 'Conv_1/kernel');
    assert.equal(report.evaluationSamples, EXAMPLES);
    assert.ok(report.agreement >= MIN_AGREEMENT, `agreement ${report.agreement}`);
    assert.ok(report.relativeChange > 0 && report.relativeChange < 0.05, `relative change ${report.relativeChange}`);
  });

  it('serves the owner a uint8 copy that predicts like the original and carries the owner mark', async () => {
    const copy = await assertQuantizedCopy(owner);
    const suspect = await uploadFiles(server, owner, copy.files);
    const found = (await server.gql(VERIFY, { a: suspect.id }, owner)).data!.verifyWatermark;
    assert.equal(found.verdict, 'MATCH');
    assert.deepEqual(
      found.matches.map((m: any) => [m.kind, m.matchedBits]),
      [['OWNER', 256]],
    );
  });

  it('gives a licensee a uint8 copy whose fingerprint names the contract', async () => {
    const plan = await createPlan(server, owner, slug, { downloadAllowed: true });
    const licensee = await signUp(server);
    const contract = await accept(server, licensee, plan.id);
    const copy = await assertQuantizedCopy(licensee);
    const suspect = await uploadFiles(server, owner, copy.files);
    const found = (await server.gql(VERIFY, { a: suspect.id }, owner)).data!.verifyWatermark;
    assert.equal(found.verdict, 'MATCH');
    assert.deepEqual(found.matches.map((m: any) => [m.kind, m.contract, m.matchedBits]).sort(), [
      ['LICENSEE', contract.id, 256],
      ['OWNER', null, 256],
    ]);
  });
});

/** A digit classifier trained here in seconds, and held-out digits it was not trained on. */
async function trainedDigits() {
  const { images, labels } = loadMnistDigits();
  const order = shuffle(
    Array.from({ length: labels.length }, (_, i) => i),
    seededRandom(12),
  );
  const pixels = (indexes: number[]) =>
    indexes.map((i) => Array.from(images.subarray(i * 784, (i + 1) * 784), (v) => v / 255));
  const train = order.slice(0, 2000);
  const heldOut = order.slice(2000, 2300);
  const model = buildMlp([784, 128, 10], 31);
  model.compile({ optimizer: tf.train.adam(0.002), loss: 'categoricalCrossentropy' });
  const xs = tf.tensor2d(pixels(train));
  const ys = tf.oneHot(
    tf.tensor1d(
      train.map((i) => labels[i]!),
      'int32',
    ),
    10,
  );
  await model.fit(xs, ys, { epochs: 6, batchSize: 64, shuffle: false, verbose: 0 });
  tf.dispose([xs, ys]);
  const artifact = await saveArtifact(model);
  model.dispose();
  return { artifact, evaluation: { inputs: pixels(heldOut), labels: heldOut.map((i) => labels[i]!) } };
}

describe('a small trained MLP quantized to uint16 and float16, published with its owner mark', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let digits: Awaited<ReturnType<typeof trainedDigits>>;

  before(async () => {
    digits = await trainedDigits();
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  for (const dtype of ['uint16', 'float16'] as const) {
    it(`keeps ${dtype} weights ${dtype} in the owner's and a licensee's copy, each carrying its marks`, async () => {
      const quantized = quantizeArtifact(digits.artifact, dtype);
      const artifact = await uploadFiles(server, owner, {
        'model.json': Buffer.from(JSON.stringify(quantized.modelJson)),
        'model.weights.bin': quantized.weights,
      });
      const { slug } = await createModel(server, owner);
      const res = await server.gql(
        `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id
          watermark { marked agreement accuracyBefore accuracyAfter } } }`,
        {
          input: {
            model: slug,
            version: '1.0.0',
            artifactId: artifact.id,
            labels: DIGITS,
            evaluation: digits.evaluation,
          },
        },
        owner,
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const { id, watermark } = res.data!.publishModelVersion;
      assert.equal(watermark.marked, true);
      assert.ok(watermark.agreement >= MIN_AGREEMENT, `agreement ${watermark.agreement}`);
      assert.ok(watermark.accuracyBefore > 0.8, `a real classifier (${watermark.accuracyBefore})`);

      const plan = await createPlan(server, owner, slug, { downloadAllowed: true });
      const licensee = await signUp(server);
      const contract = await accept(server, licensee, plan.id);
      for (const [who, expected] of [
        [owner, [['OWNER', null]]],
        [
          licensee,
          [
            ['LICENSEE', contract.id],
            ['OWNER', null],
          ],
        ],
      ] as const) {
        const copy = await download(server, id, who);
        assert.deepEqual(weightSpecs(copy.modelJson), weightSpecs(quantized.modelJson as tf.io.ModelJSON));
        assert.equal(copy.files['model.weights.bin'].byteLength, quantized.weights.byteLength);
        const suspect = await uploadFiles(server, owner, copy.files);
        const found = (await server.gql(VERIFY, { a: suspect.id }, owner)).data!.verifyWatermark;
        assert.deepEqual(found.matches.map((m: any) => [m.kind, m.contract]).sort(), expected);
        assert.ok(found.matches.every((m: any) => m.matchedBits === 256));
      }
    });
  }

  it('refuses to publish a quantized model whose step is too coarse to carry the mark, and publishes nothing', async () => {
    const ternary = ternaryKernel(digits.artifact);
    const artifact = await uploadFiles(server, owner, {
      'model.json': Buffer.from(JSON.stringify(ternary.modelJson)),
      'model.weights.bin': ternary.weights,
    });
    const { slug } = await createModel(server, owner);
    const refused = expectError(
      await server.gql(
        `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
        { input: { model: slug, version: '1.0.0', artifactId: artifact.id, labels: DIGITS } },
        owner,
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(refused.extensions!.field, 'input.watermark');
    assert.match(refused.message, /uint8-quantized with a step of \d+\.\d+σ: too coarse for a mark .*watermark: false/);
    const versions = await server.sql.query(
      'SELECT count(*)::int AS n FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.slug = $1',
      [slug],
    );
    assert.equal(versions.rows[0].n, 0);
  });
});
