// Asynchronous predictions over real HTTP: created on one server, run by the job queue (on a second replica when
// the first runs none), billed once on success, given back on failure and cancel, with their event in the outbox.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey, expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan, transition } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

const FIELDS = `id status requestId contractId createdAt startedAt completedAt outputsExpireAt webhook webhookEvents
  model { slug } modelVersion { version } error { code message reason } metrics { latencyMs units }
  outputs { label score top { label score } values }`;
const CREATE = `mutation Create($input: CreatePredictionInput!) { createPrediction(input: $input) { ${FIELDS} } }`;
const GET = `query Get($id: ID!) { prediction(id: $id) { ${FIELDS} } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelPrediction(id: $id) { ${FIELDS} } }`;
const LIST = `query List($filter: AsyncPredictionFilter, $first: Int, $after: String) {
  predictions(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }`;

const MAX_QUEUED = 5;
const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);

async function create(server: TestServer, token: string, input: Record<string, unknown>) {
  const res = await server.gql(CREATE, { input }, { token });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createPrediction;
}

/** Polls until the prediction ends, as a client would (the bound only stops a broken run from hanging the suite). */
function ended(server: TestServer, token: string, id: string) {
  return until(async () => {
    const res = await server.gql(GET, { id }, { token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return ENDED.has(res.data!.prediction.status) ? res.data!.prediction : undefined;
  }, 60_000);
}

async function quotaUsed(server: TestServer, contractId: string): Promise<number> {
  const { rows } = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contractId]);
  return rows[0].predictions_used;
}

async function usageOf(server: TestServer, predictionId: string) {
  const { rows } = await server.sql.query(
    'SELECT status, units, billable_units, quota_units FROM usage_records WHERE prediction_id = $1',
    [predictionId],
  );
  return rows;
}

describe('asynchronous predictions', () => {
  // `api` runs no prediction (ASYNC_PREDICTIONS_WORKERS=0): what it queues stays QUEUED until `worker`, a second
  // replica on the same database and secret, starts and picks it up.
  let api: TestServer;
  let worker: TestServer | undefined;
  let owner: SignedUpUser;
  let consumer: SignedUpUser;
  let slug: string;
  let contractId: string;
  /** Queued before the worker started: it runs them too. */
  const waiting: { token: string; id: string }[] = [];

  before(async () => {
    api = await startTestServer({
      ASYNC_PREDICTIONS_WORKERS: '0',
      ASYNC_PREDICTIONS_MAX_QUEUED_PER_USER: String(MAX_QUEUED),
    });
    owner = await signUp(api, { role: 'OWNER' });
    slug = (await publishedMlp(api, { token: owner.token })).model.slug;
    const plan = await createPlan(api, { token: owner.token }, slug, { predictionQuota: 100 });
    consumer = await signUp(api);
    contractId = (await accept(api, { token: consumer.token }, plan.id)).id;
  });
  after(async () => {
    await worker?.close();
    await api.close();
  });

  it('refuses what predict refuses, a bad webhook, and more queued work than the bound, at creation', async () => {
    const other = await signUp(api);
    const plan = await createPlan(api, { token: owner.token }, slug, { predictionQuota: 5 });
    await accept(api, { token: other.token }, plan.id);
    const input = { model: slug, inputs: randomRows(1, 784, 1) };
    expectError(
      await api.gql(CREATE, { input: { ...input, inputs: [[1, 2]] } }, { token: other.token }),
      'BAD_USER_INPUT',
    );
    expectError(
      await api.gql(CREATE, { input: { ...input, webhook: 'ftp://x.test/' } }, { token: other.token }),
      'BAD_USER_INPUT',
    );
    expectError(
      await api.gql(CREATE, { input: { ...input, webhookEvents: ['COMPLETED'] } }, { token: other.token }),
      'BAD_USER_INPUT',
    );
    expectError(
      await api.gql(CREATE, { input: { ...input, inputs: randomRows(6, 784, 2) } }, { token: other.token }),
      'QUOTA_EXCEEDED',
    );
    for (let i = 0; i < MAX_QUEUED; i++)
      waiting.push({ token: other.token, id: (await create(api, other.token, input)).id });
    expectError(await api.gql(CREATE, { input }, { token: other.token }), 'RATE_LIMITED');
    // Refusals took nothing: the queued ones hold their unit each.
    const { rows } = await api.sql.query(`SELECT c.predictions_used FROM contracts c WHERE c.consumer_id = $1`, [
      other.id,
    ]);
    assert.equal(rows[0].predictions_used, MAX_QUEUED);
  });

  it('cancels a queued prediction at once, giving its units back; a second cancel is a CONFLICT', async () => {
    const before = await quotaUsed(api, contractId);
    const queued = await create(api, consumer.token, { model: slug, inputs: randomRows(2, 784, 3) });
    assert.equal(queued.status, 'QUEUED');
    assert.equal(await quotaUsed(api, contractId), before + 2);
    const canceled = (await api.gql(CANCEL, { id: queued.id }, { token: consumer.token })).data!.cancelPrediction;
    assert.equal(canceled.status, 'CANCELED');
    assert.equal(await quotaUsed(api, contractId), before);
    assert.deepEqual(await usageOf(api, queued.id), [
      { status: 'CANCELED', units: 2, billable_units: 0, quota_units: 0 },
    ]);
    expectError(await api.gql(CANCEL, { id: queued.id }, { token: consumer.token }), 'CONFLICT');
    const { rows } = await api.sql.query('SELECT input FROM async_predictions WHERE id = $1', [queued.id]);
    assert.equal(rows[0].input, null, 'the input is deleted once the prediction ends');
  });

  it("the ledger check counts a prediction's lease live while it waits, and reports it once the prediction ended", async () => {
    const { metering } = api.app.services;
    const queued = await create(api, consumer.token, { model: slug, inputs: randomRows(1, 784, 14) });
    const held = await metering.verifyLedger();
    assert.equal(held.orphanedLeases, 0);
    assert.ok(held.liveLeases >= 1);
    // As a defect that ended it without its usage record would leave it: its lease is stranded.
    await api.sql.query(`UPDATE async_predictions SET status = 'FAILED' WHERE id = $1`, [queued.id]);
    const stranded = await metering.verifyLedger();
    assert.equal(stranded.orphanedLeases, 1);
    assert.equal(stranded.liveLeases, held.liveLeases - 1);
    assert.equal(stranded.holds, false);
    await api.sql.query(`UPDATE async_predictions SET status = 'QUEUED' WHERE id = $1`, [queued.id]);
    assert.equal(
      (await api.gql(CANCEL, { id: queued.id }, { token: consumer.token })).data!.cancelPrediction.status,
      'CANCELED',
    );
  });

  it("takes the contract's row lock only in its last statement: a creation that waits holds up no one", async () => {
    const plan = (await api.sql.query('SELECT plan_id FROM contracts WHERE id = $1', [contractId])).rows[0].plan_id;
    const licensee = await signUp(api);
    const contract = await accept(api, { token: licensee.token }, plan);
    const blocker = await api.sql.connect();
    try {
      // The creation's row insert waits on this lock (its reads do not).
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE async_predictions IN SHARE MODE');
      const created = create(api, licensee.token, { model: slug, inputs: randomRows(1, 784, 13) });
      await until(async () => {
        const { rows } = await api.sql.query(
          `SELECT 1 FROM pg_locks WHERE relation = 'async_predictions'::regclass AND NOT granted`,
        );
        return rows.length > 0 ? true : undefined;
      });
      // A reservation on the same contract (as predict's) is not kept waiting by the stalled creation.
      const { rows } = await blocker.query('SELECT 1 FROM contracts WHERE id = $1 FOR NO KEY UPDATE NOWAIT', [
        contract.id,
      ]);
      assert.equal(rows.length, 1);
      await blocker.query('ROLLBACK');
      const queued = await created;
      assert.equal(queued.status, 'QUEUED');
      assert.equal(await quotaUsed(api, contract.id), 1);
      waiting.push({ token: licensee.token, id: queued.id });
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
  });

  it('fails, and gives back, a prediction whose job ended without it (the periodic cleanup)', async () => {
    const before = await quotaUsed(api, contractId);
    const stranded = await create(api, consumer.token, { model: slug, inputs: randomRows(2, 784, 10) });
    // As when its job's retries ran out, its last attempt killed with its server.
    const { rows } = await api.sql.query('SELECT job_id FROM async_predictions WHERE id = $1', [stranded.id]);
    await api.app.services.jobs.cancel('async-prediction', rows[0].job_id);
    await api.app.services.asyncPredictions.cleanup();
    const failed = (await api.gql(GET, { id: stranded.id }, { token: consumer.token })).data!.prediction;
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'INTERNAL_SERVER_ERROR');
    assert.equal(await quotaUsed(api, contractId), before);
    assert.deepEqual(await usageOf(api, stranded.id), [
      { status: 'INTERNAL_SERVER_ERROR', units: 2, billable_units: 0, quota_units: 0 },
    ]);
    const { rows: events } = await api.sql.query(`SELECT type FROM events WHERE data->>'id' = $1`, [stranded.id]);
    assert.deepEqual(events, [{ type: 'prediction.failed' }]);
  });

  it('a second replica runs what the first queued: same outputs as predict, billed once, event written', async () => {
    const rows = randomRows(3, 784, 4);
    const webhook = 'https://hooks.example.com/predictions';
    const queued = await create(api, consumer.token, {
      model: slug,
      inputs: rows,
      requestId: 'async-1',
      webhook,
      webhookEvents: ['COMPLETED'],
    });
    // The requestId answers with the same prediction; another input under it is a CONFLICT.
    assert.equal(
      (
        await create(api, consumer.token, {
          model: slug,
          inputs: rows,
          requestId: 'async-1',
          webhook,
          webhookEvents: ['COMPLETED'],
        })
      ).id,
      queued.id,
    );
    expectError(
      await api.gql(
        CREATE,
        { input: { model: slug, inputs: randomRows(3, 784, 5), requestId: 'async-1' } },
        { token: consumer.token },
      ),
      'CONFLICT',
    );
    // The input is sealed at rest.
    const { rows: stored } = await api.sql.query('SELECT input FROM async_predictions WHERE id = $1', [queued.id]);
    assert.match(stored[0].input, /^v1\./);
    assert.ok(!stored[0].input.includes(String(rows[0]![0])));

    // A version archived while its prediction waits is refused when it runs, and its units go back.
    const other = await publishedMlp(api, { token: owner.token }, { seed: 11 });
    const otherPlan = await createPlan(api, { token: owner.token }, other.model.slug, { predictionQuota: 10 });
    const otherContract = await accept(api, { token: consumer.token }, otherPlan.id);
    const doomed = await create(api, consumer.token, { model: other.model.slug, inputs: randomRows(2, 784, 6) });
    assert.equal(await quotaUsed(api, otherContract.id), 2);
    const archived = await api.gql(
      `mutation { archiveModelVersion(model: "${other.model.slug}", version: "1.0.0") { status } }`,
      {},
      { token: owner.token },
    );
    assert.equal(archived.errors, undefined, JSON.stringify(archived.errors));

    // Two predictions left RUNNING as a worker killed mid-run leaves them (its job comes back after its timeout;
    // here it was never taken): one is run again on the units it holds, the other cancelled while RUNNING.
    const interrupted = await create(api, consumer.token, { model: slug, inputs: randomRows(2, 784, 8) });
    const abandoned = await create(api, consumer.token, { model: slug, inputs: randomRows(4, 784, 9) });
    await api.sql.query(`UPDATE async_predictions SET status = 'RUNNING', started_at = now() WHERE id = ANY($1)`, [
      [interrupted.id, abandoned.id],
    ]);
    const usedWithBoth = await quotaUsed(api, contractId);
    const canceled = await api.gql(CANCEL, { id: abandoned.id }, { token: consumer.token });
    assert.equal(canceled.data!.cancelPrediction.status, 'CANCELED');
    assert.equal(await quotaUsed(api, contractId), usedWithBoth - 4);

    // Licences that end while their prediction waits: it is refused when it runs, and its units go back.
    const plan = (await api.sql.query('SELECT plan_id FROM contracts WHERE id = $1', [contractId])).rows[0].plan_id;
    const endedLicences = [];
    for (const mutation of ['revokeContract', 'suspendContract']) {
      const licensee = await signUp(api);
      const contract = await accept(api, { token: licensee.token }, plan);
      const prediction = await create(api, licensee.token, { model: slug, inputs: randomRows(2, 784, 12) });
      const ended = await transition(api, { token: owner.token }, mutation, contract.id, 'unpaid invoice');
      assert.equal(ended.errors, undefined, JSON.stringify(ended.errors));
      endedLicences.push({ token: licensee.token, contractId: contract.id, id: prediction.id });
    }
    // Created with an API key that is revoked while it waits: refused when it runs (the key no longer could create
    // it), and its units go back.
    const keyHolder = await signUp(api);
    const keyContract = await accept(api, { token: keyHolder.token }, plan);
    const key = await createApiKey(api, keyHolder.token, ['PREDICT']);
    const keyed = await api.gql(
      CREATE,
      { input: { model: slug, inputs: randomRows(2, 784, 16) } },
      { apiKey: key.secret },
    );
    assert.equal(keyed.errors, undefined, JSON.stringify(keyed.errors));
    const revoked = await api.gql(
      'mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }',
      { id: key.apiKey.id },
      { token: keyHolder.token },
    );
    assert.equal(revoked.errors, undefined, JSON.stringify(revoked.errors));
    // A model made PRIVATE while its prediction waits no longer serves its licensee (NOT_FOUND, as predict).
    const hidden = await publishedMlp(api, { token: owner.token }, { seed: 12 });
    const hiddenPlan = await createPlan(api, { token: owner.token }, hidden.model.slug, { predictionQuota: 10 });
    const hiddenLicensee = await signUp(api);
    const hiddenContract = await accept(api, { token: hiddenLicensee.token }, hiddenPlan.id);
    const unseen = await create(api, hiddenLicensee.token, {
      model: hidden.model.slug,
      inputs: randomRows(2, 784, 15),
    });
    const hide = await api.gql(
      'mutation($s: String!) { updateModel(slug: $s, input: { visibility: PRIVATE }) { visibility } }',
      { s: hidden.model.slug },
      { token: owner.token },
    );
    assert.equal(hide.errors, undefined, JSON.stringify(hide.errors));

    const usedBefore = await quotaUsed(api, contractId);
    assert.equal((await api.gql(GET, { id: queued.id }, { token: consumer.token })).data!.prediction.status, 'QUEUED');
    worker = await startTestServer({
      DATABASE_URL: api.databaseUrl,
      APP_SECRET: api.env.APP_SECRET!,
      JOBS_POLLING_INTERVAL_SECONDS: '1',
    });

    const done = await ended(api, consumer.token, queued.id);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.error));
    assert.deepEqual(done.metrics.units, 3);
    assert.equal(done.modelVersion.version, '1.0.0');
    assert.ok(done.startedAt && done.completedAt && done.outputsExpireAt);
    const sync = await api.gql(PREDICT, { input: { model: slug, inputs: rows } }, { token: consumer.token });
    assert.deepEqual(done.outputs, sync.data!.predict.outputs);
    const { rows: kept } = await api.sql.query('SELECT input, output FROM async_predictions WHERE id = $1', [
      queued.id,
    ]);
    assert.equal(kept[0].input, null, 'the input is deleted once the prediction ends');
    assert.match(kept[0].output, /^v1\./, 'the outputs are sealed at rest');
    // Billed once, on completion (the sync call above bills its own 3).
    assert.deepEqual(await usageOf(api, queued.id), [{ status: 'OK', units: 3, billable_units: 3, quota_units: 3 }]);
    assert.equal(await quotaUsed(api, contractId), usedBefore + 3);

    const failed = await ended(api, consumer.token, doomed.id);
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'FORBIDDEN');
    assert.equal(failed.error.reason, 'VERSION_ARCHIVED');
    assert.equal(failed.outputs, null);
    assert.equal(await quotaUsed(api, otherContract.id), 0);
    assert.deepEqual(await usageOf(api, doomed.id), [
      { status: 'FORBIDDEN', units: 2, billable_units: 0, quota_units: 0 },
    ]);

    // Each end wrote its event for the consumer, without the outputs (the receiver fetches prediction(id)).
    const { rows: events } = await api.sql.query(
      `SELECT type, account_id, data FROM events WHERE data->>'id' = ANY($1) ORDER BY type`,
      [[queued.id, doomed.id]],
    );
    assert.deepEqual(
      events.map((e) => [e.type, e.account_id, e.data.id]),
      [
        ['prediction.completed', consumer.id, queued.id],
        ['prediction.failed', consumer.id, doomed.id],
      ],
    );
    const completed = events[0].data;
    assert.equal(completed.status, 'SUCCEEDED');
    assert.equal(completed.model, slug);
    assert.equal(completed.version, '1.0.0');
    assert.equal(completed.webhook, webhook);
    assert.deepEqual(completed.webhookEvents, ['prediction.completed']);
    assert.equal(completed.metrics.units, 3);
    assert.equal(completed.outputs, undefined);
    assert.deepEqual(events[1].data.error, {
      code: 'FORBIDDEN',
      message: failed.error.message,
      reason: 'VERSION_ARCHIVED',
    });
    const hiddenEnd = await until(async () => {
      const { rows } = await api.sql.query('SELECT status, error_code FROM async_predictions WHERE id = $1', [
        unseen.id,
      ]);
      return ENDED.has(rows[0].status) ? rows[0] : undefined;
    }, 60_000);
    assert.deepEqual(hiddenEnd, { status: 'FAILED', error_code: 'NOT_FOUND' });
    assert.equal(await quotaUsed(api, hiddenContract.id), 0);
    assert.deepEqual(await usageOf(api, unseen.id), [
      { status: 'NOT_FOUND', units: 2, billable_units: 0, quota_units: 0 },
    ]);
    for (const [licence, reason] of [
      [endedLicences[0]!, 'revoked'],
      [endedLicences[1]!, 'suspended'],
    ] as const) {
      const refused = await ended(api, licence.token, licence.id);
      assert.equal(refused.status, 'FAILED');
      assert.equal(refused.error.code, 'FORBIDDEN');
      assert.match(refused.error.message, new RegExp(reason));
      assert.equal(refused.error.reason, reason.toUpperCase());
      assert.equal(refused.outputs, null);
      assert.equal(await quotaUsed(api, licence.contractId), 0);
      assert.deepEqual(await usageOf(api, licence.id), [
        { status: 'FORBIDDEN', units: 2, billable_units: 0, quota_units: 0 },
      ]);
    }
    const keyRefused = await ended(api, keyHolder.token, keyed.data!.createPrediction.id);
    assert.equal(keyRefused.status, 'FAILED');
    assert.equal(keyRefused.error.code, 'FORBIDDEN');
    assert.match(keyRefused.error.message, /API key .* revoked/);
    assert.equal(keyRefused.error.reason, 'API_KEY_REVOKED');
    assert.equal(await quotaUsed(api, keyContract.id), 0);
    assert.deepEqual(await usageOf(api, keyRefused.id), [
      { status: 'FORBIDDEN', units: 2, billable_units: 0, quota_units: 0 },
    ]);
    assert.equal((await ended(api, consumer.token, interrupted.id)).status, 'SUCCEEDED');
    assert.deepEqual(await usageOf(api, interrupted.id), [
      { status: 'OK', units: 2, billable_units: 2, quota_units: 2 },
    ]);
    // Its units were held from creation: billing them took nothing more.
    assert.equal(await quotaUsed(api, contractId), usedBefore + 3);
    assert.equal(
      (await api.gql(GET, { id: abandoned.id }, { token: consumer.token })).data!.prediction.status,
      'CANCELED',
    );
    assert.deepEqual(await usageOf(api, abandoned.id), [
      { status: 'CANCELED', units: 4, billable_units: 0, quota_units: 0 },
    ]);

    // Past their time the outputs are no longer shown (the periodic cleanup then wipes them).
    await api.sql.query(`UPDATE async_predictions SET data_expires_at = now() - interval '1 second' WHERE id = $1`, [
      queued.id,
    ]);
    assert.equal((await api.gql(GET, { id: queued.id }, { token: consumer.token })).data!.prediction.outputs, null);
    await api.app.services.asyncPredictions.cleanup();
    const { rows: wiped } = await api.sql.query('SELECT output FROM async_predictions WHERE id = $1', [queued.id]);
    assert.equal(wiped[0].output, null);

    // The first test's queued predictions ran too: nothing is left held.
    for (const { token, id } of waiting) assert.equal((await ended(api, token, id)).status, 'SUCCEEDED');
    await assertLedgerHolds(api.sql);
  });

  it('is private to its caller, and listed newest first with cursors', async () => {
    const stranger = await signUp(api);
    const mine = await create(api, consumer.token, { model: slug, inputs: randomRows(1, 784, 7) });
    expectError(await api.gql(GET, { id: mine.id }, { token: stranger.token }), 'NOT_FOUND');
    expectError(await api.gql(CANCEL, { id: mine.id }, { token: stranger.token }), 'NOT_FOUND');
    expectError(await api.gql(GET, { id: 'not-an-id' }, { token: consumer.token }), 'BAD_USER_INPUT');
    const first = (await api.gql(LIST, { first: 2 }, { token: consumer.token })).data!.predictions;
    assert.equal(first.edges[0].node.id, mine.id);
    assert.equal(first.pageInfo.hasNextPage, true);
    const rest = (await api.gql(LIST, { first: 50, after: first.pageInfo.endCursor }, { token: consumer.token })).data!
      .predictions;
    const ids = [...first.edges, ...rest.edges].map((e: { node: { id: string } }) => e.node.id);
    assert.equal(new Set(ids).size, ids.length);
    const canceled = (await api.gql(LIST, { filter: { status: 'CANCELED', model: slug } }, { token: consumer.token }))
      .data!.predictions;
    assert.ok(canceled.edges.length >= 1 && canceled.edges.every((e: any) => e.node.status === 'CANCELED'));
    assert.deepEqual((await api.gql(LIST, {}, { token: stranger.token })).data!.predictions.edges, []);
    await ended(api, consumer.token, mine.id);
    await assertLedgerHolds(api.sql);
  });
});
