// Who may keep a batch running and read its results: a batch started with an API key stops when the key is revoked
// (it stops billing); results past their expiry are refused even before their deletion ran, and a periodic pass
// deletes those whose expiry job gave up; an admin's read of another account's batch and results is audited.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { datasetId } from '../evaluation/support.js';
import { createApiKey, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { BATCH, createBatch, downloadResults, inputsJsonl, waitForBatch } from './batch-support.js';

const ADMIN = { email: 'root@batch-access.test', password: 'an admin passphrase' };

describe('batch prediction access', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;

  before(async () => {
    server = await startTestServer({
      BATCH_CHUNK_SIZE: '2',
      JOBS_POLLING_INTERVAL_SECONDS: '1',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token }, { sizes: [8, 3] })).model.slug;
  });
  after(() => server.close());

  async function licensee() {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 100_000 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    return consumer;
  }

  it('ends a batch FAILED (API_KEY_REVOKED) when the key that started it is revoked; it bills no further chunk', async () => {
    const consumer = await licensee();
    const key = await createApiKey(server, consumer.token, ['PREDICT']);
    const auth = { apiKey: key.secret };
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(2000, 8, 1)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    const revoked = await server.gql(
      `mutation R($id: ID!) { revokeApiKey(id: $id) { revokedAt } }`,
      {
        id: key.apiKey.id,
      },
      { token: consumer.token },
    );
    assert.equal(revoked.errors, undefined, JSON.stringify(revoked.errors));

    const done = await waitForBatch(server.url, { token: consumer.token }, created.id);
    assert.equal(done.status, 'FAILED', JSON.stringify(done));
    assert.ok(done.processed < done.total, JSON.stringify(done));
    assert.equal(done.billedUnits, done.processed);
    const { rows } = await server.sql.query(`SELECT error->>'reason' AS reason FROM batch_predictions WHERE id = $1`, [
      created.id,
    ]);
    assert.equal(rows[0].reason, 'API_KEY_REVOKED');
    const error = await server.gql(
      `query B($id: ID!) { batchPrediction(id: $id) { error { code reason } } }`,
      {
        id: created.id,
      },
      { token: consumer.token },
    );
    assert.deepEqual(error.data!.batchPrediction.error, { code: 'FORBIDDEN', reason: 'API_KEY_REVOKED' });
  });

  it('audits admin reads, refuses results past their expiry, and the periodic pass deletes them', async () => {
    const consumer = await licensee();
    const auth = { token: consumer.token };
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(3, 8, 2)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    const done = await waitForBatch(server.url, auth, created.id);
    assert.equal(done.status, 'SUCCEEDED');

    const admin = { token: (await logIn(server, ADMIN.email, ADMIN.password)).token };
    const read = await server.gql(BATCH, { id: created.id }, admin);
    assert.equal(read.errors, undefined, JSON.stringify(read.errors));
    assert.equal((await downloadResults(server.origin, admin, done.resultsUrl)).lines.length, 3);
    await downloadResults(server.origin, auth, done.resultsUrl); // the requester's own read: not audited
    const { rows: audited } = await server.sql.query(
      `SELECT actor_id, details->>'read' AS read FROM audit_events WHERE action = 'admin.read' AND target_id = $1
       ORDER BY id`,
      [created.id],
    );
    assert.equal(audited.length, 2, JSON.stringify(audited));
    assert.deepEqual(
      audited.map((row) => row.read),
      ['batch prediction', 'batch prediction results'],
    );

    // Past the expiry, the expiry job not run (its start is still BATCH_RESULTS_TTL_DAYS away): refused.
    await server.sql.query('UPDATE batch_predictions SET results_expire_at = now() WHERE id = $1', [created.id]);
    const refused = await downloadResults(server.origin, auth, done.resultsUrl);
    assert.equal(refused.status, 404);
    assert.equal(refused.body.error.reason, 'RESULTS_EXPIRED');

    assert.ok((await server.app.services.batchPredictions.deleteExpiredResults()) >= 1);
    const { rows } = await server.sql.query(
      `SELECT results_deleted_at IS NOT NULL AS deleted,
              (SELECT count(*)::int FROM batch_prediction_chunks WHERE batch_id = b.id) AS chunks
       FROM batch_predictions b WHERE id = $1`,
      [created.id],
    );
    assert.deepEqual(rows[0], { deleted: true, chunks: 0 });
  });
});
