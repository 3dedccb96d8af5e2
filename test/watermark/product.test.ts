// Watermarks through the product: owner marks at publish, fingerprinted licensed downloads, verification.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, createModel, DIGITS, PREDICT, PUBLISH, uploadWithTfjs } from '../support/models.js';
import { accept, createPlan } from '../support/licensing.js';
import { loadMnistDigits } from '../../demo/datasets.js';
import { subspaceHead } from './support.js';

/** A real digit classifier, trained here in seconds, and held-out digits to measure the mark on. */
async function trainedDigits() {
  const { images, labels } = loadMnistDigits();
  const pixels = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) =>
      Array.from(images.subarray((from + i) * 784, (from + i + 1) * 784), (v) => v / 255),
    );
  // The package lists digits in label order: interleave to mix classes.
  const order = Array.from({ length: labels.length }, (_, i) => i).sort(
    (a, b) => ((a * 7919) % labels.length) - ((b * 7919) % labels.length),
  );
  const pick = (from: number, count: number) => order.slice(from, from + count);
  const train = pick(0, 5000);
  const heldOut = pick(5000, 400);
  const model = buildMlp([784, 128, 10], 11);
  model.compile({ optimizer: tf.train.adam(0.002), loss: 'categoricalCrossentropy' });
  const xs = tf.tensor2d(train.flatMap((i) => pixels(i, 1)));
  const ys = tf.oneHot(
    tf.tensor1d(
      train.map((i) => labels[i]!),
      'int32',
    ),
    10,
  );
  // Deterministic (seeded weights, no shuffling) and trained to confidence, like a model an owner would publish.
  await model.fit(xs, ys, { epochs: 8, batchSize: 64, shuffle: false, verbose: 0 });
  xs.dispose();
  ys.dispose();
  return {
    model,
    evaluation: { inputs: heldOut.map((i) => pixels(i, 1)[0]!), labels: heldOut.map((i) => labels[i]!) },
  };
}

const VERIFY = `query V($a: ID!) { verifyWatermark(artifactId: $a) { verdict keysTried
  matches { model version kind contract matchedBits totalBits pValue
    modelVersion { id version model { slug } } leakedContract { id status consumer { id } } } } }`;
const ADMIN = { email: 'admin@watermark.test', password: 'watermark admin phrase' };

/** What a licensee or thief would do: load the served copy with tfjs, then republish it as their own upload. */
async function downloadAndReupload(
  server: TestServer,
  versionId: string,
  downloader: { token: string },
  uploader: { token: string },
) {
  const headers = { authorization: `Bearer ${downloader.token}` };
  const copy = await tf.loadLayersModel(`${server.origin}/v1/versions/${versionId}/model.json`, {
    requestInit: { headers },
  });
  return uploadWithTfjs(server, copy, { token: uploader.token });
}

describe('watermarks: publish, licensed downloads, verification', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let version: { id: string; watermark: any; metrics: any };
  let heldOut: number[][];
  const metrics = { dataset: 'probe set', samples: 2, accuracy: 0.5 };

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    const { model, evaluation } = await trainedDigits();
    heldOut = evaluation.inputs;
    const artifact = await uploadWithTfjs(server, model, { token: owner.token });
    slug = (await createModel(server, { token: owner.token })).slug;
    const res = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id
        metrics { accuracy dataset } watermark { marked tensor margin relativeChange maxChange bits agreement
        accuracyBefore accuracyAfter evaluationSamples shapedWith } } }`,
      { input: { model: slug, version: '1.0.0', artifactId: artifact.id, labels: DIGITS, metrics, evaluation } },
      { token: owner.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    version = res.data!.publishModelVersion;
  });
  after(() => server.close());

  it('marks the served weights at publish and reports the cost, leaving stated metrics as stated', () => {
    const report = version.watermark;
    assert.equal(report.marked, true);
    assert.equal(report.bits, 256);
    assert.ok(report.agreement >= 0.995, `agreement ${report.agreement}`);
    // Each version's key is its own, so its least-norm mark may miss the budget on some keys: then the mark is
    // shaped on half of the 400 examples and its cost reported on the other half.
    assert.equal(report.evaluationSamples + (report.shapedWith ?? 0), 400, JSON.stringify(report));
    assert.ok(report.accuracyBefore > 0.8, `a real classifier (${report.accuracyBefore})`);
    assert.ok(report.accuracyBefore - report.accuracyAfter <= 0.005);
    assert.ok(report.relativeChange > 0 && report.relativeChange < 0.2, `relative change ${report.relativeChange}`);
    assert.deepEqual(version.metrics, { accuracy: 0.5, dataset: 'probe set' });
  });

  it("finds the owner mark in the owner's download, and nothing in an independently trained model", async () => {
    const suspect = await downloadAndReupload(server, version.id, owner, owner);
    const found = (await server.gql(VERIFY, { a: suspect.id }, { token: owner.token })).data!.verifyWatermark;
    assert.equal(found.verdict, 'MATCH');
    assert.deepEqual(
      found.matches.map((m: any) => [m.model, m.version, m.kind, m.contract]),
      [[slug, '1.0.0', 'OWNER', null]],
    );
    // The links name the same version (and its model); an owner mark leaks no contract.
    assert.deepEqual(found.matches[0].modelVersion, { id: version.id, version: '1.0.0', model: { slug } });
    assert.equal(found.matches[0].leakedContract, null);
    assert.ok(found.matches[0].matchedBits >= 184 && found.matches[0].pValue < 1e-12);

    const unrelated = await uploadWithTfjs(server, buildMlp([784, 128, 10], 77), { token: owner.token });
    const clean = (await server.gql(VERIFY, { a: unrelated.id }, { token: owner.token })).data!.verifyWatermark;
    assert.deepEqual([clean.verdict, clean.matches], ['NO_MATCH', []]);
    assert.ok(clean.keysTried >= 1);
  });

  it('gives each licensee with download rights a fingerprinted copy that names its contract', async () => {
    const downloads = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: true });
    const callsOnly = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: false });
    const leaker = await signUp(server);
    const honest = await signUp(server);
    const noRights = await signUp(server);
    const leakerContract = await accept(server, { token: leaker.token }, downloads.id);
    await accept(server, { token: honest.token }, downloads.id);
    await accept(server, { token: noRights.token }, callsOnly.id);

    const denied = await fetch(`${server.origin}/v1/versions/${version.id}/model.json`, {
      headers: { authorization: `Bearer ${noRights.token}` },
    });
    assert.equal(denied.status, 403);
    // The honest licensee downloads too, so two fingerprints exist for this version.
    await downloadAndReupload(server, version.id, honest, owner);
    const leaked = await downloadAndReupload(server, version.id, leaker, owner);
    const found = (await server.gql(VERIFY, { a: leaked.id }, { token: owner.token })).data!.verifyWatermark;
    assert.equal(found.verdict, 'MATCH');
    const kinds = found.matches.map((m: any) => [m.kind, m.contract]).sort();
    assert.deepEqual(kinds, [
      ['LICENSEE', leakerContract.id],
      ['OWNER', null],
    ]);
    assert.equal(found.keysTried, 3);
    const licensee = found.matches.find((m: any) => m.kind === 'LICENSEE');
    assert.deepEqual(licensee.leakedContract, { id: leakerContract.id, status: 'ACTIVE', consumer: { id: leaker.id } });
    assert.equal(licensee.modelVersion.id, version.id);

    // The copy still predicts what the served model predicts, on real digits.
    const rows = heldOut.slice(0, 100);
    const served = await server.gql(PREDICT, { input: { model: slug, inputs: rows } }, { token: owner.token });
    const copy = await tf.loadLayersModel(`${server.origin}/v1/versions/${version.id}/model.json`, {
      requestInit: { headers: { authorization: `Bearer ${leaker.token}` } },
    });
    const copyLabels = (
      tf.tidy(() => (copy.predict(tf.tensor2d(rows)) as tf.Tensor).argMax(1).arraySync()) as number[]
    ).map((i) => DIGITS[i]);
    const agreeing = served.data!.predict.outputs.filter((o: any, i: number) => o.label === copyLabels[i]).length;
    assert.ok(agreeing >= 98, `${agreeing}/100 labels agree`);

    const audit = await server.sql.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'model_version.downloaded' AND target_id = $1`,
      [version.id],
    );
    assert.ok(audit.rows[0].n >= 3);
    const metered = await server.sql.query(
      `SELECT count(*)::int AS n FROM usage_records WHERE status = 'DOWNLOAD' AND model_version_id = $1`,
      [version.id],
    );
    assert.equal(metered.rows[0].n, audit.rows[0].n);
  });

  it('keeps keys to their owners: consumers cannot verify, other owners find nothing, admins find it all', async () => {
    const suspect = await downloadAndReupload(server, version.id, owner, owner);
    const consumer = await signUp(server);
    expectError(await server.gql(VERIFY, { a: suspect.id }, { token: consumer.token }), 'FORBIDDEN');
    const rival = await signUp(server, { role: 'OWNER' });
    const theirUpload = await downloadAndReupload(server, version.id, owner, rival);
    const probing = (await server.gql(VERIFY, { a: theirUpload.id }, { token: rival.token })).data!.verifyWatermark;
    assert.deepEqual([probing.verdict, probing.keysTried], ['NO_MATCH', 0]);
    // Nor can they test an upload that is not theirs.
    expectError(await server.gql(VERIFY, { a: suspect.id }, { token: rival.token }), 'NOT_FOUND');
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const adminView = (await server.gql(VERIFY, { a: theirUpload.id }, { token: admin.token })).data!.verifyWatermark;
    assert.equal(adminView.verdict, 'MATCH');
    assert.deepEqual(adminView.matches[0].modelVersion.model, { slug });
    // Admins see any contract: a leaked licensee copy, traced by an admin, names its contract.
    const leaker = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: true });
    const contract = await accept(server, { token: leaker.token }, plan.id);
    const leaked = await downloadAndReupload(server, version.id, leaker, rival);
    const traced = (await server.gql(VERIFY, { a: leaked.id }, { token: admin.token })).data!.verifyWatermark;
    assert.deepEqual(
      traced.matches.filter((m: any) => m.kind === 'LICENSEE').map((m: any) => m.leakedContract?.id),
      [contract.id],
    );
    const audited = await server.sql.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'watermark.verified'`,
    );
    assert.ok(audited.rows[0].n >= 3);
  });

  it('shapes the mark on half the evaluation examples when the least-norm mark breaks the budget', async () => {
    const { model, sample } = subspaceHead();
    const examples = sample(400);
    const artifact = await uploadWithTfjs(server, model, { token: owner.token });
    const head = (await createModel(server, { token: owner.token })).slug;
    const publishWith = (version: string, count: number) =>
      server.gql(
        `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id
          watermark { marked agreement evaluationSamples shapedWith } } }`,
        { input: { model: head, version, artifactId: artifact.id, evaluation: { inputs: examples.slice(0, count) } } },
        { token: owner.token },
      );

    // Too few examples to shape with: refused, with the measured cost, and nothing published.
    const refused = expectError(await publishWith('0.9.0', 150), 'BAD_USER_INPUT');
    assert.match(refused.message, /of predictions .* on 150 examples.*more evaluation examples/);

    const res = await publishWith('1.0.0', 400);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const shaped = res.data!.publishModelVersion;
    assert.equal(shaped.watermark.shapedWith, 200);
    assert.equal(shaped.watermark.evaluationSamples, 200, 'checked on the examples it was not shaped with');
    assert.ok(shaped.watermark.agreement >= 0.995, `agreement ${shaped.watermark.agreement}`);
    const versions = await server.sql.query(
      `SELECT v.version, (a.params->'calibration'->>'samples')::int AS samples,
         (a.params->'calibration'->>'inputs')::int AS inputs, length(a.calibration) AS bytes
       FROM model_versions v JOIN models m ON m.id = v.model_id
       LEFT JOIN artifact_variants a ON a.version_id = v.id AND a.kind = 'OWNER_MARKED' WHERE m.slug = $1`,
      [head],
    );
    // The mean (256 floats) and the covariance (256 × 256), float32.
    assert.deepEqual(versions.rows, [{ version: '1.0.0', samples: 200, inputs: 256, bytes: 4 * (256 + 256 * 256) }]);

    // The licensee's copy is shaped like the owner's: it names its contract and predicts like the original.
    const plan = await createPlan(server, { token: owner.token }, head, { downloadAllowed: true });
    const licensee = await signUp(server);
    const contract = await accept(server, { token: licensee.token }, plan.id);
    const leaked = await downloadAndReupload(server, shaped.id, licensee, owner);
    const found = (await server.gql(VERIFY, { a: leaked.id }, { token: owner.token })).data!.verifyWatermark;
    assert.deepEqual(found.matches.map((m: any) => [m.kind, m.contract, m.leakedContract?.id ?? null]).sort(), [
      ['LICENSEE', contract.id, contract.id],
      ['OWNER', null, null],
    ]);
    const unseen = sample(200);
    const labelsOf = (m: tf.LayersModel) =>
      tf.tidy(() => (m.predict(tf.tensor2d(unseen)) as tf.Tensor).argMax(1).arraySync()) as number[];
    const copy = await tf.loadLayersModel(`${server.origin}/v1/versions/${shaped.id}/model.json`, {
      requestInit: { headers: { authorization: `Bearer ${licensee.token}` } },
    });
    const original = labelsOf(model);
    const copyAgreement = labelsOf(copy).filter((label, i) => label === original[i]).length / unseen.length;
    assert.ok(copyAgreement >= 0.995, `licensee copy agreement ${copyAgreement}`);
  });

  it('refuses to publish a model too small to carry a mark, unless the owner opts out (recorded)', async () => {
    const tiny = await uploadWithTfjs(server, buildMlp([8, 4, 2], 3), { token: owner.token });
    const model = await createModel(server, { token: owner.token });
    const refused = expectError(
      await server.gql(
        PUBLISH,
        { input: { model: model.slug, version: '1.0.0', artifactId: tiny.id } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(refused.extensions!.field, 'input.watermark');
    const optedOut = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { watermark { marked } } }`,
      { input: { model: model.slug, version: '1.0.0', artifactId: tiny.id, watermark: false } },
      { token: owner.token },
    );
    assert.equal(optedOut.data!.publishModelVersion.watermark.marked, false);
  });
});
