// Batch predictions over real HTTP: a licensee's batch over an uploaded JSONL data set completes with the answers
// sync predict gives for the same rows, bad rows recorded as row errors (not billed), and exactly one unit billed
// per row that ran; a quota used up midway stops the batch with QUOTA_EXCEEDED keeping what it finished; a cancel
// stops it; nobody else can read, download or cancel it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { datasetId } from '../evaluation/support.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import {
  BATCH,
  CANCEL_BATCH,
  CREATE_BATCH,
  createBatch,
  downloadResults,
  inputsJsonl,
  waitForBatch,
} from './batch-support.js';

const CHUNK = 16;

describe('batch predictions', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;

  before(async () => {
    server = await startTestServer({ BATCH_CHUNK_SIZE: String(CHUNK), JOBS_POLLING_INTERVAL_SECONDS: '1' });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token }, { sizes: [8, 6, 3] })).model.slug;
  });
  after(() => server.close());

  async function licensee(predictionQuota: number) {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    return { consumer, auth: { token: consumer.token }, contractId: contract.id };
  }

  const billed = async (contractId: string) =>
    (
      await server.sql.query<{ used: number; billed: number; records: number }>(
        `SELECT predictions_used AS used,
                (SELECT coalesce(sum(billable_units), 0)::int FROM usage_records WHERE contract_id = c.id) AS billed,
                (SELECT count(*)::int FROM usage_records WHERE contract_id = c.id AND status = 'OK') AS records
         FROM contracts c WHERE id = $1`,
        [contractId],
      )
    ).rows[0]!;

  it('runs every row as sync predict does, records bad rows as row errors, and bills each row that ran once', async () => {
    const { auth, contractId } = await licensee(10_000);
    const rows = randomRows(50, 8, 11);
    const inputs: unknown[] = [...rows];
    inputs.splice(7, 0, [1, 2]); // row 7: 2 values, not 8
    inputs.splice(40, 0, 'not numbers'); // row 40
    const dataset = await datasetId(server, auth, inputsJsonl(inputs));
    const created = await createBatch(server.url, auth, { model: slug, dataset, topK: 2 });
    assert.equal(created.status, 'QUEUED');
    assert.equal(created.total, 52);
    assert.equal(created.resultsExpireAt, null);

    const done = await waitForBatch(server.url, auth, created.id);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done));
    assert.equal(done.processed, 52);
    assert.equal(done.failedRows, 2);
    assert.equal(done.billedUnits, 50);
    assert.ok(done.startedAt && done.completedAt && done.resultsExpireAt);
    assert.equal(done.resultsUrl, `/v1/batch-predictions/${created.id}/results.jsonl`);

    const { status, lines } = await downloadResults(server.origin, auth, done.resultsUrl);
    assert.equal(status, 200);
    assert.deepEqual(
      lines.map((line) => line.row),
      inputs.map((_, i) => i),
    );
    assert.equal(lines[7].error.code, 'BAD_USER_INPUT');
    assert.match(lines[7].error.message, /^input: expected 8 numbers \(shape \[8\]\) but got shape \[2\]/);
    assert.equal(lines[40].error.code, 'BAD_USER_INPUT');
    // The owner predicts free: the same rows, the same answers.
    const sync = await server.gql(PREDICT, { input: { model: slug, inputs: rows, topK: 2 } }, { token: owner.token });
    assert.equal(sync.errors, undefined, JSON.stringify(sync.errors));
    const outputs = lines.filter((line) => line.output).map((line) => line.output);
    assert.equal(outputs.length, 50);
    outputs.forEach((output, i) => {
      const expected = sync.data!.predict.outputs[i];
      assert.equal(output.label, expected.label);
      assert.deepEqual(output.top, expected.top);
      assert.deepEqual(output.values, expected.values);
    });

    const units = await billed(contractId);
    assert.deepEqual(units, { used: 50, billed: 50, records: Math.ceil(52 / CHUNK) });
    const { rows: events } = await server.sql.query(
      `SELECT data FROM events WHERE type = 'batch.completed' AND data->>'id' = $1`,
      [created.id],
    );
    assert.equal(events.length, 1);
    assert.equal(events[0].data.status, 'SUCCEEDED');
    assert.equal(events[0].data.processed, 52);
    // Stored sealed: no row's output is readable in the table.
    const { rows: stored } = await server.sql.query('SELECT results FROM batch_prediction_chunks WHERE batch_id = $1', [
      created.id,
    ]);
    assert.ok(stored.every((row) => !row.results.includes('"row"')));
    await assertLedgerHolds(server.sql);
  });

  it('stops with QUOTA_EXCEEDED when a chunk does not fit the quota, keeping the rows it finished', async () => {
    const { auth, contractId } = await licensee(CHUNK + 4);
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(50, 8, 12)));
    const created = await createBatch(server.url, auth, { model: slug, dataset, webhook: 'https://example.com/hook' });
    const done = await waitForBatch(server.url, auth, created.id);
    assert.equal(done.status, 'QUOTA_EXCEEDED', JSON.stringify(done));
    assert.equal(done.error.code, 'QUOTA_EXCEEDED');
    assert.equal(done.processed, CHUNK);
    assert.equal(done.billedUnits, CHUNK);
    const { lines } = await downloadResults(server.origin, auth, done.resultsUrl);
    assert.equal(lines.length, CHUNK);
    assert.ok(lines.every((line, i) => line.row === i && line.output));
    assert.deepEqual(await billed(contractId), { used: CHUNK, billed: CHUNK, records: 1 });
    const { rows: events } = await server.sql.query(
      `SELECT data FROM events WHERE type = 'batch.completed' AND data->>'id' = $1`,
      [created.id],
    );
    assert.equal(events[0].data.status, 'QUOTA_EXCEEDED');
    assert.equal(events[0].data.webhook, 'https://example.com/hook');
    await assertLedgerHolds(server.sql);
  });

  it('cancels a running batch: no chunk is committed after it, what ran stays billed and downloadable', async () => {
    const { auth, contractId } = await licensee(100_000);
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(3000, 8, 13)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    await waitForBatch(server.url, auth, created.id, (b) => b.processed > 0);
    const res = await server.gql(CANCEL_BATCH, { id: created.id }, auth);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.equal(res.data!.cancelBatchPrediction.status, 'CANCELED');
    const canceled = res.data!.cancelBatchPrediction;
    assert.ok(canceled.processed < 3000);
    // A chunk in flight at the cancel is not kept: the counts stay as the cancel left them.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const later = await waitForBatch(server.url, auth, created.id);
    assert.equal(later.processed, canceled.processed);
    const { lines } = await downloadResults(server.origin, auth, later.resultsUrl);
    assert.equal(lines.length, canceled.processed);
    const units = await billed(contractId);
    assert.equal(units.used, canceled.processed);
    assert.equal(units.billed, canceled.processed);
    const again = await server.gql(CANCEL_BATCH, { id: created.id }, auth);
    assert.equal(again.errors?.[0]?.extensions?.code, 'CONFLICT');
    await assertLedgerHolds(server.sql);
  });

  it("is its requester's only: others are told it does not exist; the requester's list pages newest first", async () => {
    const { auth } = await licensee(1000);
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(3, 8, 14)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    const done = await waitForBatch(server.url, auth, created.id);
    const stranger = { token: (await signUp(server)).token };
    const read = await server.gql(BATCH, { id: created.id }, stranger);
    assert.equal(read.errors?.[0]?.extensions?.code, 'NOT_FOUND');
    const cancel = await server.gql(CANCEL_BATCH, { id: created.id }, stranger);
    assert.equal(cancel.errors?.[0]?.extensions?.code, 'NOT_FOUND');
    const download = await downloadResults(server.origin, stranger, done.resultsUrl);
    assert.equal(download.status, 404);
    assert.equal(download.body.error.code, 'NOT_FOUND');
    assert.equal((await downloadResults(server.origin, {}, done.resultsUrl)).status, 401);
    const list = await server.gql(`{ batchPredictions { edges { node { id } } } }`, {}, stranger);
    assert.deepEqual(list.data!.batchPredictions.edges, []);
    const mine = await server.gql(`{ batchPredictions(first: 1) { edges { node { id } } } }`, {}, auth);
    assert.deepEqual(mine.data!.batchPredictions.edges, [{ node: { id: created.id } }]);
    const LIST = `query L($filter: BatchPredictionFilter) { batchPredictions(filter: $filter) { edges { node { id } } } }`;
    const byModel = await server.gql(LIST, { filter: { model: slug, status: 'SUCCEEDED' } }, auth);
    assert.deepEqual(byModel.data!.batchPredictions.edges, [{ node: { id: created.id } }]);
    const none = await server.gql(LIST, { filter: { model: 'no-such-model' } }, auth);
    assert.deepEqual(none.data!.batchPredictions.edges, []);
    // Pages go newest first: a later batch, then (after its cursor) the earlier one.
    const later = await createBatch(server.url, auth, { model: slug, dataset });
    await waitForBatch(server.url, auth, later.id);
    const PAGE = `query P($first: Int, $after: String) {
      batchPredictions(first: $first, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }`;
    const newestPage = (await server.gql(PAGE, { first: 1 }, auth)).data!.batchPredictions;
    assert.deepEqual(newestPage.edges, [{ node: { id: later.id } }]);
    assert.equal(newestPage.pageInfo.hasNextPage, true);
    const olderPage = (await server.gql(PAGE, { first: 1, after: newestPage.pageInfo.endCursor }, auth)).data!
      .batchPredictions;
    assert.deepEqual(olderPage.edges, [{ node: { id: created.id } }]);
    assert.equal(olderPage.pageInfo.hasNextPage, false);
    for (const [variables, field] of [
      [{ first: 0 }, 'first'],
      [{ first: 101 }, 'first'],
      [{ first: 1, after: 'garbage' }, 'after'],
    ] as const)
      assert.equal(expectError(await server.gql(PAGE, variables, auth), 'BAD_USER_INPUT').extensions?.field, field);
    // Someone else's data set is not found either (the owner may run the model, not the consumer's data).
    const theirs = await server.gql(CREATE_BATCH, { input: { model: slug, dataset } }, { token: owner.token });
    assert.equal(theirs.errors?.[0]?.extensions?.code, 'NOT_FOUND');
  });

  it("runs the model's owner's batch free: a usage record per chunk, nothing billed", async () => {
    const auth = { token: owner.token };
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(20, 8, 17)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    const done = await waitForBatch(server.url, auth, created.id);
    assert.equal(done.status, 'SUCCEEDED');
    assert.equal(done.billedUnits, 0);
    const { rows } = await server.sql.query(
      `SELECT units, billable_units, contract_id FROM usage_records
       WHERE consumer_id = $1 AND status = 'OK' AND at >= $2 ORDER BY units DESC`,
      [owner.id, created.createdAt],
    );
    assert.deepEqual(rows, [
      { units: CHUNK, billable_units: 0, contract_id: null },
      { units: 20 - CHUNK, billable_units: 0, contract_id: null },
    ]);
  });

  it('deletes the results when they expire; the batch and its counts stay', async () => {
    const { auth } = await licensee(1000);
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(3, 8, 16)));
    const created = await createBatch(server.url, auth, { model: slug, dataset });
    const done = await waitForBatch(server.url, auth, created.id);
    assert.equal(done.status, 'SUCCEEDED');
    // BATCH_RESULTS_TTL_DAYS later: the expiry and its job's start moved to now.
    await server.sql.query('UPDATE batch_predictions SET results_expire_at = now() WHERE id = $1', [created.id]);
    const { rowCount } = await server.sql.query(
      `UPDATE pgboss.job SET start_after = now() WHERE name = 'batch-prediction-results-expiry' AND data->>'batchId' = $1`,
      [created.id],
    );
    assert.equal(rowCount, 1);
    const expired = await waitForBatch(server.url, auth, created.id, (b) => b.resultsUrl === null);
    assert.equal(expired.processed, 3);
    assert.equal(expired.status, 'SUCCEEDED');
    const download = await downloadResults(server.origin, auth, done.resultsUrl);
    assert.equal(download.status, 404);
    assert.equal(download.body.error.reason, 'RESULTS_EXPIRED');
    const { rows } = await server.sql.query(
      'SELECT count(*)::int AS n FROM batch_prediction_chunks WHERE batch_id = $1',
      [created.id],
    );
    assert.equal(rows[0].n, 0);
  });

  it('refuses bad input with typed errors', async () => {
    const { auth } = await licensee(1000);
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(2, 8, 15)));
    const csv = await datasetId(server, auth, 'a,label\n1,x\n', 'text/csv');
    const cases: [Record<string, unknown>, string, string][] = [
      [{ model: slug, dataset, topK: 0 }, 'BAD_USER_INPUT', 'input.topK'],
      [{ model: slug, dataset, webhook: 'ftp://example.com' }, 'BAD_USER_INPUT', 'input.webhook'],
      [{ model: slug, dataset: csv }, 'BAD_USER_INPUT', 'input.dataset'],
      [{ model: slug, dataset: 'not-a-uuid' }, 'BAD_USER_INPUT', 'input.dataset'],
      [{ model: 'no-such-model', dataset }, 'NOT_FOUND', ''],
    ];
    for (const [input, code, field] of cases) {
      const res = await server.gql(CREATE_BATCH, { input }, auth);
      assert.equal(res.errors?.[0]?.extensions?.code, code, JSON.stringify([input, res.errors]));
      if (field) assert.equal(res.errors![0]!.extensions!.field, field);
    }
  });
});
