// Evaluations over real HTTP with the real demo MNIST MLP: the report equals what predict's own answers give,
// owners run free, licensees are metered per chunk under their quota and rate limit (cancel and quota exhaustion
// midway leave the ledger whole), owners publish a report to the version's card, and two versions are compared.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { classificationMetrics } from '../../src/evaluation/metrics.js';
import type { EvalSet } from '../../src/evaluation/eval-set.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedTabular } from '../support/models.js';
import { startTestServer, type Credentials, type TestServer } from '../support/server.js';
import {
  datasetId,
  demoMnist,
  digit,
  evaluate,
  EVALUATE,
  EVALUATION,
  EVALUATION_FIELDS,
  mnistJsonl,
  publishDemoMnist,
  waitForEvaluation,
} from './support.js';

const EXAMPLES = 500;

/** The predicted class index of each of the first `count` digits, from predict's own answers (256 a call). */
async function predictedByPredict(server: TestServer, auth: Credentials, slug: string, version: string, count: number) {
  const { evalSet } = await demoMnist();
  const predicted: number[] = [];
  for (let start = 0; start < count; start += 250) {
    const inputs = Array.from({ length: Math.min(250, count - start) }, (_, i) => digit(evalSet, start + i));
    const res = await server.gql(
      `mutation P($input: PredictInput!) { predict(input: $input) { outputs { label } } }`,
      { input: { model: slug, version, inputs } },
      auth,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    predicted.push(...res.data!.predict.outputs.map((o: { label: string }) => evalSet.labels.indexOf(o.label)));
  }
  return predicted;
}

function assertReport(report: any, expected: ReturnType<typeof classificationMetrics>) {
  assert.equal(report.accuracy, expected.accuracy);
  assert.equal(report.macroF1, expected.macroF1);
  assert.deepEqual(report.confusionMatrix, expected.confusionMatrix);
  assert.deepEqual(report.labels, expected.labels);
  assert.deepEqual(report.perClass, expected.perClass);
  assert.equal(report.examplesEvaluated, expected.samples);
}

async function usage(server: TestServer, contractId: string) {
  const { rows } = await server.sql.query<{ status: string; units: number; billable: number; kind: string }>(
    `SELECT status, units, billable_units AS billable, kind FROM usage_records WHERE contract_id = $1 ORDER BY id`,
    [contractId],
  );
  // Evaluation chunks are metered as their own kind of usage.
  assert.ok(
    rows.every((row) => row.kind === 'EVALUATION'),
    `usage kinds: ${rows.map((row) => row.kind).join(', ')}`,
  );
  const { rows: contract } = await server.sql.query<{ used: number }>(
    'SELECT predictions_used AS used FROM contracts WHERE id = $1',
    [contractId],
  );
  return { records: rows.map(({ kind: _kind, ...record }) => record), used: contract[0]!.used };
}

describe('evaluations of the demo MNIST MLP', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let evalSet: EvalSet;
  let slug: string;
  let ownerDataset: string;
  const jsonl = () => mnistJsonl(evalSet, EXAMPLES);

  before(async () => {
    [server, { evalSet }] = await Promise.all([startTestServer({ EVALUATION_MAX_RUNNING_PER_USER: '1' }), demoMnist()]);
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishDemoMnist(server, { token: owner.token })).slug;
    ownerDataset = await datasetId(server, { token: owner.token }, jsonl());
  });
  after(() => server.close());

  it("reports what predict's own answers give, free for the owner, with progress to the end", async () => {
    const auth = { token: owner.token };
    const started = await evaluate(server, auth, { model: slug, version: '1.0.0', dataset: ownerDataset });
    assert.equal(started.status, 'QUEUED');
    assert.deepEqual(started.progress, { fraction: 0, examplesEvaluated: 0, examplesTotal: EXAMPLES });
    const done = await waitForEvaluation(server, auth, started.id);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.error));
    assert.deepEqual(done.progress, { fraction: 1, examplesEvaluated: EXAMPLES, examplesTotal: EXAMPLES });

    const predicted = await predictedByPredict(server, auth, slug, '1.0.0', EXAMPLES);
    const expected = classificationMetrics(evalSet.targets.slice(0, EXAMPLES), predicted, 10, evalSet.labels);
    assertReport(done.report, expected);
    assert.equal(done.report.partial, false);
    const { rows } = await server.sql.query('SELECT sha256 FROM datasets WHERE id = $1', [ownerDataset]);
    assert.equal(done.report.datasetSha256, rows[0].sha256);
    assert.equal(done.datasetSha256, rows[0].sha256);
    // The demo's own score on the same 500 digits is in the same range (it was measured on 2,000).
    assert.ok(done.report.accuracy > 0.9, String(done.report.accuracy));
    const owned = await server.sql.query(`SELECT count(*)::int AS n FROM usage_records WHERE model_version_id = $1`, [
      done.version.id,
    ]);
    // Only the predict calls above were recorded (owners are not metered for evaluations).
    assert.equal(owned.rows[0].n, 2);

    const listed = await server.gql(`{ evaluations(model: "${slug}") { id status } }`, {}, auth);
    assert.deepEqual(listed.data!.evaluations, [{ id: started.id, status: 'SUCCEEDED' }]);
  });

  it('refuses what it cannot evaluate, and a data set that does not fit fails naming its line', async () => {
    const auth = { token: owner.token };
    const regression = await publishedTabular(server, auth, [{ name: 'a' }, { name: 'b' }]);
    const refused = await server.gql(
      EVALUATE,
      { input: { model: regression.model.slug, dataset: ownerDataset } },
      auth,
    );
    assert.match(expectError(refused, 'BAD_USER_INPUT').message, /not a classifier/);
    expectError(
      await server.gql(EVALUATE, { input: { model: 'no-such-model', dataset: ownerDataset } }, auth),
      'NOT_FOUND',
    );
    expectError(
      await server.gql(EVALUATE, { input: { model: slug, dataset: '00000000-0000-4000-8000-000000000000' } }, auth),
      'NOT_FOUND',
    );
    expectError(await server.gql(EVALUATE, { input: { model: slug, dataset: 'x' } }, auth), 'BAD_USER_INPUT');

    const lines = mnistJsonl(evalSet, 6).split('\n');
    lines[4] = JSON.stringify({ input: digit(evalSet, 4).slice(0, 700), label: '4' });
    const shortInput = await datasetId(server, auth, lines.join('\n'));
    const failed = await waitForEvaluation(
      server,
      auth,
      (await evaluate(server, auth, { model: slug, dataset: shortInput })).id,
    );
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'BAD_USER_INPUT');
    assert.match(failed.error.message, /line 5: input: expected 784 numbers/);
    assert.equal(failed.progress.examplesEvaluated, 0, 'nothing runs before every line is checked');

    const labelled = mnistJsonl(evalSet, 3).split('\n');
    labelled[1] = JSON.stringify({ input: digit(evalSet, 1), label: 'seven' });
    const badLabel = labelled.join('\n');
    const wrongLabel = await waitForEvaluation(
      server,
      auth,
      (await evaluate(server, auth, { model: slug, dataset: await datasetId(server, auth, badLabel) })).id,
    );
    assert.match(wrongLabel.error.message, /line 2: label "seven" is not one of the model's 10 classes/);
  });

  it("keeps reports private to who ran them, and publishes the owner's to the version's card", async () => {
    const auth = { token: owner.token };
    const done = await waitForEvaluation(
      server,
      auth,
      (await evaluate(server, auth, { model: slug, dataset: ownerDataset })).id,
    );
    const stranger = await signUp(server, { role: 'OWNER' });
    expectError(await server.gql(EVALUATION, { id: done.id }, { token: stranger.token }), 'NOT_FOUND');
    expectError(
      await server.gql(`mutation { publishEvaluation(id: "${done.id}") { id } }`, {}, { token: stranger.token }),
      'NOT_FOUND',
    );
    const card = `{ model(slug: "${slug}") { version(version: "1.0.0") { metrics { accuracy }
      verifiedMetrics { verified accuracy macroF1 datasetSha256 examples evaluationId evaluatedAt } } } }`;
    assert.equal((await server.gql(card)).data!.model.version.verifiedMetrics, null);

    const published = await server.gql(`mutation { publishEvaluation(id: "${done.id}") { id publishedAt } }`, {}, auth);
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    // Anyone who sees the model sees the verified metrics beside the self-reported ones (none here).
    const shown = (await server.gql(card)).data!.model.version;
    assert.equal(shown.metrics, null);
    assert.deepEqual(shown.verifiedMetrics, {
      verified: true,
      accuracy: done.report.accuracy,
      macroF1: done.report.macroF1,
      datasetSha256: done.datasetSha256,
      examples: EXAMPLES,
      evaluationId: done.id,
      evaluatedAt: done.finishedAt,
    });
    const { rows } = await server.sql.query(
      `SELECT actor_id, target_id, details FROM audit_events WHERE action = 'evaluation.published'`,
    );
    assert.deepEqual(rows, [
      {
        actor_id: owner.id,
        target_id: done.version.id,
        details: { evaluation: done.id, datasetSha256: done.datasetSha256 },
      },
    ]);
  });

  it('meters a licensee per chunk, and a quota used up midway fails the run after the chunks billed', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 200 });
    const consumer = await signUp(server);
    const auth = { token: consumer.token };
    expectError(
      await server.gql(EVALUATE, { input: { model: slug, dataset: await datasetId(server, auth, jsonl()) } }, auth),
      'FORBIDDEN',
    );
    const contract = await accept(server, auth, plan.id);
    const dataset = await datasetId(server, auth, jsonl());
    const failed = await waitForEvaluation(server, auth, (await evaluate(server, auth, { model: slug, dataset })).id);
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'QUOTA_EXCEEDED');
    // Chunks of 64: three fit in 200 units; the fourth does not.
    assert.match(failed.error.message, /the report is partial: 192 of 500 examples were evaluated and billed/);
    assert.equal(failed.progress.examplesEvaluated, 192);
    assert.equal(failed.report.partial, true);
    assert.equal(failed.report.examplesEvaluated, 192);
    const { records, used } = await usage(server, contract.id);
    assert.deepEqual(records, [
      { status: 'OK', units: 64, billable: 64 },
      { status: 'OK', units: 64, billable: 64 },
      { status: 'OK', units: 64, billable: 64 },
      { status: 'QUOTA_EXCEEDED', units: 64, billable: 0 },
    ]);
    assert.equal(used, 192);
    // The usage report counts the billed examples as evaluations (not predictions).
    const totals = await server.gql(
      `{ usage { totals { calls predictions explanations evaluations billableUnits errors } } }`,
      {},
      auth,
    );
    assert.deepEqual(totals.data!.usage.totals, {
      calls: 4,
      predictions: 0,
      explanations: 0,
      evaluations: 192,
      billableUnits: 192,
      errors: 1,
    });
    await assertLedgerHolds(server.sql);
  });

  it("cancels a licensee's run waiting on its rate limit, keeping what was billed; one run at a time per user", async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { rateLimitPerMinute: 2 });
    const consumer = await signUp(server);
    const auth = { token: consumer.token };
    const contract = await accept(server, auth, plan.id);
    const dataset = await datasetId(server, auth, jsonl());
    const started = await evaluate(server, auth, { model: slug, dataset });
    // Two chunks a minute: the run waits after the second.
    const waiting = await waitForEvaluation(server, auth, started.id, (e) => e.progress.examplesEvaluated === 128);
    assert.equal(waiting.status, 'RUNNING');
    assert.equal(waiting.progress.fraction, 128 / EXAMPLES);
    const second = await server.gql(EVALUATE, { input: { model: slug, dataset } }, auth);
    assert.equal(expectError(second, 'RATE_LIMITED').extensions!.retryAfter, 5);

    const cancelled = await server.gql(
      `mutation { cancelEvaluation(id: "${started.id}") { ${EVALUATION_FIELDS} } }`,
      {},
      auth,
    );
    assert.equal(cancelled.errors, undefined, JSON.stringify(cancelled.errors));
    assert.equal(cancelled.data!.cancelEvaluation.status, 'CANCELLED');
    const ended = await waitForEvaluation(server, auth, started.id, (e) => e.report !== null);
    assert.equal(ended.status, 'CANCELLED');
    assert.equal(ended.report.partial, true);
    assert.equal(ended.report.examplesEvaluated, 128);
    expectError(await server.gql(`mutation { cancelEvaluation(id: "${started.id}") { id } }`, {}, auth), 'CONFLICT');
    const { records, used } = await usage(server, contract.id);
    assert.equal(used, 128);
    assert.deepEqual(
      records.filter((r) => r.status === 'OK'),
      [
        { status: 'OK', units: 64, billable: 64 },
        { status: 'OK', units: 64, billable: 64 },
      ],
    );
    assert.ok(records.slice(2).every((r) => r.status === 'RATE_LIMITED' && r.billable === 0));
    await assertLedgerHolds(server.sql);
  });

  it('compares two versions: both reports and where they disagree, as predict answers them', async () => {
    const auth = { token: owner.token };
    await publishDemoMnist(server, auth, { slug, version: '1.1.0', watermark: true });
    const res = await server.gql(
      `mutation C($input: CompareModelVersionsInput!) { compareModelVersions(input: $input) { id status } }`,
      { input: { model: slug, a: '1.0.0', b: '1.1.0', dataset: ownerDataset } },
      auth,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const id = res.data!.compareModelVersions.id;
    const query = `{ comparison(id: "${id}") { id status progress { fraction }
      a { id status version { version } report { accuracy macroF1 confusionMatrix perClass { label precision recall f1 support } labels examplesEvaluated } }
      b { id status version { version } report { accuracy macroF1 confusionMatrix perClass { label precision recall f1 support } labels examplesEvaluated } }
      disagreement { examples differing aRightBWrong bRightAWrong differingIndices aRightBWrongIndices bRightAWrongIndices } } }`;
    let comparison: any;
    for (const deadline = Date.now() + 60_000; ;) {
      comparison = (await server.gql(query, {}, auth)).data!.comparison;
      if (comparison.status !== 'QUEUED' && comparison.status !== 'RUNNING') break;
      assert.ok(Date.now() < deadline, 'comparison still running');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(comparison.status, 'SUCCEEDED');
    assert.equal(comparison.progress.fraction, 1);
    const truth = evalSet.targets.slice(0, EXAMPLES);
    const a = await predictedByPredict(server, auth, slug, '1.0.0', EXAMPLES);
    const b = await predictedByPredict(server, auth, slug, '1.1.0', EXAMPLES);
    assertReport(comparison.a.report, classificationMetrics(truth, a, 10, evalSet.labels));
    assertReport(comparison.b.report, classificationMetrics(truth, b, 10, evalSet.labels));
    assert.equal(comparison.a.version.version, '1.0.0');
    assert.equal(comparison.b.version.version, '1.1.0');
    const differing = truth.map((_, i) => i).filter((i) => a[i] !== b[i]);
    const aRight = differing.filter((i) => a[i] === truth[i]);
    const bRight = differing.filter((i) => b[i] === truth[i]);
    assert.deepEqual(comparison.disagreement, {
      examples: EXAMPLES,
      differing: differing.length,
      aRightBWrong: aRight.length,
      bRightAWrong: bRight.length,
      differingIndices: differing.slice(0, 20),
      aRightBWrongIndices: aRight.slice(0, 20),
      bRightAWrongIndices: bRight.slice(0, 20),
    });
  });
});
