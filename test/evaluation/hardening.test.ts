// Evaluations where something goes wrong, over real HTTP with real models: a model that answers NaN fails the
// run unbilled, a comparison's reports cover what each version was billed for, a model made private midway stops
// a licensee's run, a report that cannot be written still ends the run, and only the owner's runs go on the card.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import type { EvalSet } from '../../src/evaluation/eval-set.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { buildMlp, createModel, DIGITS, publish, publishedMlp, uploadWithTfjs } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { datasetId, demoMnist, evaluate, mnistJsonl, publishDemoMnist, waitForEvaluation } from './support.js';

const ADMIN = { email: 'admin@evaluation-hardening.test', password: 'evaluation admin phrase' };

describe('evaluations when things go wrong', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let evalSet: EvalSet;

  before(async () => {
    [server, { evalSet }] = await Promise.all([
      // A small per-call image budget: chunks of 64 images take more than one predict call may.
      startTestServer({
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        PREDICT_MAX_IMAGE_BYTES_PER_CALL: '2048',
      }),
      demoMnist(),
    ]);
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  async function contractRows(contractId: string) {
    const { rows } = await server.sql.query<{ status: string; units: number; billable: number }>(
      `SELECT status, units, billable_units AS billable FROM usage_records WHERE contract_id = $1 ORDER BY id`,
      [contractId],
    );
    const { rows: contract } = await server.sql.query<{ used: number }>(
      'SELECT predictions_used AS used FROM contracts WHERE id = $1',
      [contractId],
    );
    return { records: rows, used: contract[0]!.used };
  }

  it("evaluates images whose chunk takes more than one predict call's image bytes, each within predict's limits", async () => {
    const auth = { token: owner.token };
    const { model, artifact } = await publishedMlp(server, auth, { sizes: [16, 3] });
    const labels = ['a', 'b', 'c'];
    await publish(server, auth, {
      model: model.slug,
      version: '2.0.0',
      artifactId: artifact.id,
      signature: {
        input: {
          shape: [16],
          dtype: 'float32',
          preprocessing: { kind: 'image', height: 4, width: 4, channels: 1, scaling: 'unit', resize: 'refuse' },
        },
        output: { kind: 'classification', labels },
      },
    });
    const lines: string[] = [];
    for (let i = 0; i < 100; i++) {
      const pixels = Buffer.from(Array.from({ length: 16 }, (_, j) => (i * 37 + j * 91) % 256));
      const png = await sharp(pixels, { raw: { width: 4, height: 4, channels: 1 } })
        .png()
        .toBuffer();
      lines.push(JSON.stringify({ input: png.toString('base64'), label: labels[i % 3] }));
    }
    const dataset = await datasetId(server, auth, `${lines.join('\n')}\n`);
    const done = await waitForEvaluation(
      server,
      auth,
      (await evaluate(server, auth, { model: model.slug, version: '2.0.0', dataset })).id,
    );
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.error));
    assert.equal(done.report.examplesEvaluated, 100);
    assert.equal(
      done.report.confusionMatrix.flat().reduce((a: number, b: number) => a + b, 0),
      100,
    );

    // One example over the per-call bytes is refused as predict refuses it, naming its line.
    const big = await sharp({
      create: {
        width: 64,
        height: 64,
        channels: 3,
        background: '#000',
        noise: { type: 'gaussian', mean: 128, sigma: 60 },
      },
    })
      .png()
      .toBuffer();
    assert.ok(big.length > 2048);
    lines[70] = JSON.stringify({ input: big.toString('base64'), label: 'a' });
    const refused = await waitForEvaluation(
      server,
      auth,
      (
        await evaluate(server, auth, {
          model: model.slug,
          version: '2.0.0',
          dataset: await datasetId(server, auth, `${lines.join('\n')}\n`),
        })
      ).id,
    );
    assert.equal(refused.error?.code, 'BAD_USER_INPUT');
    assert.match(refused.error.message, /line 71: .*at most 2048 bytes/);
  });

  it('fails a run whose model answers NaN with MODEL_ERROR, and does not bill it', async () => {
    const auth = { token: owner.token };
    const broken = buildMlp([784, 10], 3);
    broken.setWeights(broken.getWeights().map((w) => tf.fill(w.shape, Number.NaN)));
    const artifact = await uploadWithTfjs(server, broken, auth);
    const model = await createModel(server, auth);
    await publish(server, auth, { model: model.slug, version: '1.0.0', artifactId: artifact.id, labels: DIGITS });
    const plan = await createPlan(server, auth, model.slug, { predictionQuota: 1000 });
    const consumer = await signUp(server);
    const consumerAuth = { token: consumer.token };
    const contract = await accept(server, consumerAuth, plan.id);
    const dataset = await datasetId(server, consumerAuth, mnistJsonl(evalSet, 10));
    const failed = await waitForEvaluation(
      server,
      consumerAuth,
      (await evaluate(server, consumerAuth, { model: model.slug, dataset })).id,
    );
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'MODEL_ERROR');
    assert.match(failed.error.message, /non-finite value \(NaN\)/);
    assert.equal(failed.report, null);
    assert.deepEqual(await contractRows(contract.id), {
      records: [{ status: 'MODEL_ERROR', units: 10, billable: 0 }],
      used: 0,
    });
    await assertLedgerHolds(server.sql);
  });

  it('reports each compared version over the chunks it was billed for when the quota ends between them', async () => {
    const { slug } = await publishDemoMnist(server, { token: owner.token });
    await publishDemoMnist(server, { token: owner.token }, { slug, version: '1.1.0' });
    // Chunks of 64: a0 (64), b0 (128), a1 (192) fit in 200 units; b1 does not.
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 200 });
    const consumer = await signUp(server);
    const auth = { token: consumer.token };
    const contract = await accept(server, auth, plan.id);
    const dataset = await datasetId(server, auth, mnistJsonl(evalSet, 300));
    const res = await server.gql(
      `mutation C($input: CompareModelVersionsInput!) { compareModelVersions(input: $input) { a { id } b { id } } }`,
      { input: { model: slug, a: '1.0.0', b: '1.1.0', dataset } },
      auth,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const a = await waitForEvaluation(server, auth, res.data!.compareModelVersions.a.id);
    const b = await waitForEvaluation(server, auth, res.data!.compareModelVersions.b.id);
    assert.equal(a.status, 'FAILED');
    assert.equal(a.error.code, 'QUOTA_EXCEEDED');
    assert.match(a.error.message, /of 300 examples, each version evaluated and billed 1\.0\.0: 128, 1\.1\.0: 64/);
    assert.equal(a.report.examplesEvaluated, 128);
    assert.equal(b.report.examplesEvaluated, 64);
    const { records, used } = await contractRows(contract.id);
    assert.equal(used, 192);
    assert.equal(a.report.examplesEvaluated + b.report.examplesEvaluated, used);
    assert.deepEqual(
      records.map((r) => r.status),
      ['OK', 'OK', 'OK', 'QUOTA_EXCEEDED'],
    );
    await assertLedgerHolds(server.sql);
  });

  it("stops a licensee's run when the owner makes the model private midway (NOT_FOUND)", async () => {
    const { slug } = await publishDemoMnist(server, { token: owner.token });
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 10_000 });
    const consumer = await signUp(server);
    const auth = { token: consumer.token };
    await accept(server, auth, plan.id);
    const dataset = await datasetId(server, auth, mnistJsonl(evalSet, 300));
    // The run's progress write after its first chunk waits on a lock this test holds while the model changes.
    const holder = await server.sql.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(7275999)');
      await server.sql.query(`
        CREATE FUNCTION test_hold_progress() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock(7275999); RETURN NEW; END $$;
        CREATE TRIGGER test_hold_progress BEFORE UPDATE ON evaluations FOR EACH ROW
          WHEN (NEW.examples_evaluated = 64 AND OLD.examples_evaluated = 0) EXECUTE FUNCTION test_hold_progress();`);
      const started = await evaluate(server, auth, { model: slug, dataset });
      for (;;) {
        const { rows } = await server.sql.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = 7275999`,
        );
        if (rows.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const hidden = await server.gql(
        'mutation($s: String!) { updateModel(slug: $s, input: { visibility: PRIVATE }) { visibility } }',
        { s: slug },
        { token: owner.token },
      );
      assert.equal(hidden.errors, undefined, JSON.stringify(hidden.errors));
      await holder.query('SELECT pg_advisory_unlock(7275999)');
      const failed = await waitForEvaluation(server, auth, started.id);
      assert.equal(failed.status, 'FAILED');
      assert.equal(failed.error.code, 'NOT_FOUND');
      assert.equal(failed.report.examplesEvaluated, 64);
    } finally {
      await server.sql.query(
        'DROP TRIGGER IF EXISTS test_hold_progress ON evaluations; DROP FUNCTION IF EXISTS test_hold_progress()',
      );
      holder.release();
    }
  });

  it('ends the run FAILED when its report cannot be written, freeing its place', async () => {
    const auth = { token: owner.token };
    const { slug } = await publishDemoMnist(server, auth);
    const dataset = await datasetId(server, auth, mnistJsonl(evalSet, 100));
    await server.sql.query(`
      CREATE FUNCTION test_refuse_report() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'no report today'; END $$;
      CREATE TRIGGER test_refuse_report BEFORE UPDATE ON evaluations FOR EACH ROW
        WHEN (NEW.report IS NOT NULL) EXECUTE FUNCTION test_refuse_report();`);
    try {
      const failed = await waitForEvaluation(
        server,
        auth,
        (await evaluate(server, auth, { model: slug, dataset })).id,
        undefined,
        15_000,
      );
      assert.equal(failed.status, 'FAILED');
      assert.equal(failed.error.code, 'INTERNAL_SERVER_ERROR');
      assert.match(failed.error.message, /its report could not be recorded/);
      assert.ok(failed.finishedAt);
    } finally {
      await server.sql.query(
        'DROP TRIGGER IF EXISTS test_refuse_report ON evaluations; DROP FUNCTION IF EXISTS test_refuse_report()',
      );
    }
    const again = await waitForEvaluation(server, auth, (await evaluate(server, auth, { model: slug, dataset })).id);
    assert.equal(again.status, 'SUCCEEDED');
  });

  it("publishes only the owner's own evaluations, even for an admin", async () => {
    const { slug } = await publishDemoMnist(server, { token: owner.token });
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const adminAuth = { token: admin.token };
    const adminRun = await waitForEvaluation(
      server,
      adminAuth,
      (
        await evaluate(server, adminAuth, {
          model: slug,
          dataset: await datasetId(server, adminAuth, mnistJsonl(evalSet, 20)),
        })
      ).id,
    );
    assert.equal(adminRun.status, 'SUCCEEDED');
    const PUBLISH = (id: string) => `mutation { publishEvaluation(id: "${id}") { id publishedAt } }`;
    expectError(await server.gql(PUBLISH(adminRun.id), {}, adminAuth), 'FORBIDDEN');
    const { rows } = await server.sql.query('SELECT published_at FROM evaluations WHERE id = $1', [adminRun.id]);
    assert.equal(rows[0].published_at, null);

    const ownerAuth = { token: owner.token };
    const ownerRun = await waitForEvaluation(
      server,
      ownerAuth,
      (
        await evaluate(server, ownerAuth, {
          model: slug,
          dataset: await datasetId(server, ownerAuth, mnistJsonl(evalSet, 20)),
        })
      ).id,
    );
    const published = await server.gql(PUBLISH(ownerRun.id), {}, adminAuth);
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    assert.ok(published.data!.publishEvaluation.publishedAt);
  });
});
