// optimizeModelVersion over real HTTP: the demo MNIST MLP published (owner-marked) as 1.0.0 with examples from
// its eval.json, then quantised to UINT8 as 1.1.0 through the one publish pipeline. The derived version serves
// the derived bytes, names its parent (and the parent it), carries the measured report, keeps the owner mark;
// refusals change nothing.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { AuditAction } from '../../src/audit/audit-service.js';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { demoArtifacts } from '../support/demo-artifacts.js';
import { accept, createPlan } from '../support/licensing.js';
import { createModel, DIGITS, PREDICT, uploadFiles, uploadWithTfjs } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const OPTIMIZE = `mutation O($input: OptimizeModelVersionInput!) { optimizeModelVersion(input: $input) {
  id version labels changelog signature
  derivedFrom { version }
  optimization { quantize pruneSparsity evaluationSamples agreement sizeRatio gzipRatio accuracyDrop maxAccuracyDrop
    macroF1Drop
    parent { bytes gzipBytes accuracy macroF1 coldLoadMs p50Batch1Ms p50Batch64Ms }
    derived { bytes gzipBytes accuracy macroF1 coldLoadMs p50Batch1Ms p50Batch64Ms } }
  variants { kind served params sha256 } } }`;

const LINEAGE = `query L($slug: String!) { model(slug: $slug) { versions { version derivedFrom { version }
  derivatives { version } optimization { quantize } } } }`;

const VERIFY = `query V($a: ID!) { verifyWatermark(artifactId: $a) { verdict keysTried
  matches { version kind contract matchedBits totalBits } } }`;

describe('optimizeModelVersion', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let evalSet: EvalSet;
  /** All 500 held-out digits, as the demo publisher sends them (5 decimals). */
  let evaluation: { inputs: number[][]; labels: number[] };

  const optimize = (input: Record<string, unknown>, token = owner.token) =>
    server.gql(OPTIMIZE, { input: { model: slug, version: '1.0.0', evaluation, ...input } }, { token });

  const counts = async () => {
    const { rows } = await server.sql.query(
      `SELECT (SELECT count(*)::int FROM model_versions) AS versions,
              (SELECT count(*)::int FROM artifact_variants) AS variants,
              (SELECT count(*)::int FROM artifact_blobs) AS blobs,
              (SELECT count(*)::int FROM audit_events WHERE action = $1) AS events`,
      [AuditAction.VERSION_PUBLISHED],
    );
    return rows[0] as Record<string, number>;
  };

  /** Top labels predict gives for every eval example on `version`. */
  const predictedLabels = async (version: string) => {
    const labels: string[] = [];
    for (let start = 0; start < evaluation.inputs.length; start += 250) {
      const res = await server.gql(
        PREDICT,
        { input: { model: slug, version, inputs: evaluation.inputs.slice(start, start + 250), topK: 1 } },
        { token: owner.token },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      assert.equal(res.data!.predict.modelVersion.version, version);
      labels.push(...res.data!.predict.outputs.map((o: { label: string }) => o.label));
    }
    return labels;
  };

  before(async () => {
    const dir = path.join(await demoArtifacts(), 'mnist-mlp');
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
    evaluation = {
      inputs: Array.from({ length: evalSet.count }, (_, i) =>
        Array.from(
          evalSet.inputs.subarray(i * evalSet.exampleSize, (i + 1) * evalSet.exampleSize),
          (v) => Math.round(v * 1e5) / 1e5,
        ),
      ),
      labels: evalSet.targets,
    };
    const uploaded = await uploadFiles(
      server,
      { token: owner.token },
      await readFile(path.join(dir, 'model.json')),
      await readFile(path.join(dir, 'model.weights.bin')),
    );
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    const artifact = uploaded.body as { id: string };
    slug = (await createModel(server, { token: owner.token })).slug;
    const published = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { watermark { marked } } }`,
      {
        input: {
          model: slug,
          version: '1.0.0',
          artifactId: artifact.id,
          labels: DIGITS,
          watermark: true,
          evaluation: { inputs: evaluation.inputs.slice(0, 400), labels: evaluation.labels.slice(0, 400) },
        },
      },
      { token: owner.token },
    );
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    assert.equal(published.data!.publishModelVersion.watermark.marked, true);
  });
  after(() => server?.close());

  it('publishes a UINT8 variant as 1.1.0: measured, ≥ 3.5× smaller, ≤ 1 point lost, served, lineage both ways', async (t) => {
    const before = await counts();
    const res = await optimize({ newVersion: '1.1.0', quantize: 'UINT8', changelog: 'UINT8 weights' });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const derived = res.data!.optimizeModelVersion;
    const report = derived.optimization;
    t.diagnostic(`report: ${JSON.stringify(report)}`);
    assert.equal(derived.version, '1.1.0');
    assert.equal(derived.changelog, 'UINT8 weights');
    assert.deepEqual(derived.labels, DIGITS);
    assert.equal(derived.derivedFrom.version, '1.0.0');
    assert.equal(report.quantize, 'UINT8');
    assert.equal(report.pruneSparsity, null);
    assert.equal(report.evaluationSamples, evalSet.count);
    assert.equal(report.maxAccuracyDrop, 0.01);
    assert.ok(report.sizeRatio >= 3.5, `size ratio ${report.sizeRatio}`);
    assert.ok(report.derived.bytes * 3.5 <= report.parent.bytes);
    assert.ok(report.gzipRatio > 1);
    assert.ok(report.accuracyDrop <= 0.01 + 1e-9, `accuracy drop ${report.accuracyDrop}`);
    assert.ok(report.parent.accuracy > 0.8, 'the demo MLP is a working classifier');
    for (const side of [report.parent, report.derived]) {
      for (const key of ['coldLoadMs', 'p50Batch1Ms', 'p50Batch64Ms']) assert.ok(side[key] > 0, key);
    }
    // The one served variant holds the derived bytes and what they were derived with.
    assert.deepEqual(
      derived.variants.map((v: any) => [v.kind, v.served, v.params]),
      [['QUANTIZED', true, { quantize: 'UINT8', pruneSparsity: null }]],
    );
    // One version, one variant, one blob, one audit event naming the parent.
    assert.deepEqual(await counts(), {
      versions: before.versions! + 1,
      variants: before.variants! + 1,
      blobs: before.blobs! + 1,
      events: before.events! + 1,
    });
    const { rows: events } = await server.sql.query(
      `SELECT details FROM audit_events WHERE action = $1 AND target_id = $2`,
      [AuditAction.VERSION_PUBLISHED, derived.id],
    );
    assert.equal(events.length, 1);
    assert.deepEqual(
      { ...events[0].details, sha256: undefined },
      {
        model: slug,
        version: '1.1.0',
        derivedFrom: '1.0.0',
        sha256: undefined,
        quantize: 'UINT8',
        pruneSparsity: null,
      },
    );
    assert.equal(events[0].details.sha256, derived.variants[0].sha256);

    const lineage = await server.gql(LINEAGE, { slug }, { token: owner.token });
    assert.equal(lineage.errors, undefined, JSON.stringify(lineage.errors));
    assert.deepEqual(lineage.data!.model.versions, [
      { version: '1.1.0', derivedFrom: { version: '1.0.0' }, derivatives: [], optimization: { quantize: 'UINT8' } },
      { version: '1.0.0', derivedFrom: null, derivatives: [{ version: '1.1.0' }], optimization: null },
    ]);
    // Anyone who sees the model sees the lineage and the report (not the variants).
    const stranger = await signUp(server);
    const seen = await server.gql(LINEAGE, { slug }, { token: stranger.token });
    assert.deepEqual(seen.data, lineage.data);
  });

  it('predict on 1.1.0 serves the quantised weights and agrees with 1.0.0 on ≥ 99% of the eval examples', async (t) => {
    const [parentLabels, derivedLabels] = [await predictedLabels('1.0.0'), await predictedLabels('1.1.0')];
    const agreement = parentLabels.filter((label, i) => label === derivedLabels[i]).length / parentLabels.length;
    t.diagnostic(`agreement over predict: ${agreement}`);
    assert.ok(agreement >= 0.99, `agreement ${agreement}`);
    // What is served is the quantised artifact: its manifest carries tfjs quantisation entries.
    const modelJson = (await (
      await fetch(`${server.origin}/v1/versions/${await versionId('1.1.0')}/model.json`, {
        headers: { authorization: `Bearer ${owner.token}` },
      })
    ).json()) as { weightsManifest: { weights: { quantization?: { dtype: string } }[] }[] };
    const dtypes = modelJson.weightsManifest.flatMap((group) => group.weights.map((w) => w.quantization?.dtype));
    assert.ok(dtypes.includes('uint8'), JSON.stringify(dtypes));
  });

  const versionId = async (version: string) => {
    const { rows } = await server.sql.query(
      `SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.slug = $1 AND v.version = $2`,
      [slug, version],
    );
    return rows[0].id as string;
  };

  const downloadAndReupload = async (version: string, token: string) => {
    const copy = await tf.loadLayersModel(`${server.origin}/v1/versions/${await versionId(version)}/model.json`, {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    return uploadWithTfjs(server, copy, { token: owner.token });
  };

  it("the owner mark reads back from a download of 1.1.0, with 1.0.0's key (the version that was marked)", async () => {
    const suspect = await downloadAndReupload('1.1.0', owner.token);
    const found = await server.gql(VERIFY, { a: suspect.id }, { token: owner.token });
    assert.equal(found.errors, undefined, JSON.stringify(found.errors));
    assert.equal(found.data!.verifyWatermark.verdict, 'MATCH');
    assert.deepEqual(
      found.data!.verifyWatermark.matches.map((m: any) => [m.version, m.kind]),
      [['1.0.0', 'OWNER']],
    );
  });

  it("a licensee's download of 1.1.0 is its own fingerprinted copy of the quantised weights; 1.1.0 shows the mark", async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: true });
    const licensee = await signUp(server);
    const contract = await accept(server, { token: licensee.token }, plan.id);
    const suspect = await downloadAndReupload('1.1.0', licensee.token);
    const found = await server.gql(VERIFY, { a: suspect.id }, { token: owner.token });
    assert.equal(found.errors, undefined, JSON.stringify(found.errors));
    assert.deepEqual(found.data!.verifyWatermark.matches.map((m: any) => [m.version, m.kind, m.contract]).sort(), [
      ['1.0.0', 'LICENSEE', contract.id],
      ['1.0.0', 'OWNER', null],
    ]);
    const { rows } = await server.sql.query(
      `SELECT v.version, a.params->>'markedVersion' AS marked FROM artifact_variants a
         JOIN model_versions v ON v.id = a.version_id WHERE a.kind = 'LICENSEE_COPY' AND a.contract_id = $1`,
      [contract.id],
    );
    assert.deepEqual(rows, [{ version: '1.1.0', marked: await versionId('1.0.0') }]);
    const shown = await server.gql(
      `query W($slug: String!) { model(slug: $slug) { version(version: "1.1.0") { watermark { marked bits } } } }`,
      { slug },
      { token: owner.token },
    );
    assert.equal(shown.data!.model.version.watermark.marked, true, JSON.stringify(shown));
  });

  it('refuses a budget-breaking derivation with the measurements, leaving no version, variant or blob', async () => {
    const before = await counts();
    const res = await optimize({ newVersion: '1.2.0', pruneSparsity: 0.97, maxAccuracyDrop: 0.1 });
    const error = expectError(res, 'BAD_USER_INPUT');
    assert.equal(error.extensions!.field, 'input.maxAccuracyDrop');
    const measurements = error.extensions!.measurements as any;
    assert.ok(measurements.accuracyDrop > 0.001, JSON.stringify(measurements));
    assert.equal(measurements.evaluationSamples, evalSet.count);
    assert.ok(measurements.parent.accuracy > measurements.derived.accuracy);
    assert.deepEqual(await counts(), before);
    const lineage = await server.gql(LINEAGE, { slug }, { token: owner.token });
    assert.deepEqual(
      lineage.data!.model.versions.map((v: any) => v.version),
      ['1.1.0', '1.0.0'],
    );
  });

  it('refuses non-owners, unknown versions, taken numbers and hostile inputs, typed, changing nothing', async () => {
    const before = await counts();
    const other = await signUp(server, { role: 'OWNER' });
    expectError(await optimize({ newVersion: '1.3.0', quantize: 'UINT8' }, other.token), 'FORBIDDEN');
    expectError(await optimize({ version: '9.9.9', newVersion: '1.3.0', quantize: 'UINT8' }), 'NOT_FOUND');
    expectError(await optimize({ newVersion: '1.1.0', quantize: 'UINT8' }), 'CONFLICT');
    const badInputs: [Record<string, unknown>, string][] = [
      [{ pruneSparsity: 0 }, 'input.pruneSparsity'],
      [{ pruneSparsity: 1 }, 'input.pruneSparsity'],
      [{ pruneSparsity: -0.5 }, 'input.pruneSparsity'],
      [{ quantize: null, pruneSparsity: null }, 'input.quantize'],
      [{ quantize: 'UINT8', newVersion: 'one' }, 'input.newVersion'],
      [{ quantize: 'UINT8', maxAccuracyDrop: -1 }, 'input.maxAccuracyDrop'],
      [{ quantize: 'UINT8', maxAccuracyDrop: 101 }, 'input.maxAccuracyDrop'],
      [{ quantize: 'UINT8', evaluation: null }, 'input.evaluation'],
      [{ quantize: 'UINT8', evaluation: { inputs: evaluation.inputs.slice(0, 5) } }, 'input.evaluation.labels'],
      [{ quantize: 'UINT8', evaluation: { inputs: [[1, 2, 3]], labels: [0] } }, 'input.evaluation.inputs[0]'],
      [{ quantize: 'UINT8', evaluation: { inputs: [evaluation.inputs[0]], labels: [10] } }, 'input.evaluation.labels'],
    ];
    for (const [input, field] of badInputs) {
      const error = expectError(await optimize({ newVersion: '1.3.0', ...input }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field, `${JSON.stringify(input)}: ${JSON.stringify(error)}`);
    }
    // An archived version does not serve, so it is not published again as a derivative.
    await server.gql(
      `mutation A($m: String!) { archiveModelVersion(model: $m, version: "1.0.0") { status } }`,
      { m: slug },
      { token: owner.token },
    );
    const archived = expectError(await optimize({ newVersion: '1.3.0', quantize: 'UINT8' }), 'BAD_USER_INPUT');
    assert.match(archived.message, /archived/);
    // A NaN cannot travel in JSON; GraphQL refuses a non-enum quantisation before the service.
    expectError(await optimize({ newVersion: '1.3.0', quantize: 'INT4' }), 'BAD_USER_INPUT');
    assert.deepEqual(await counts(), before);
  });
});
