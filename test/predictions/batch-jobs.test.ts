// Batches on a server that runs no chunk itself, so that their jobs stay as the test leaves them: a batch whose
// chunk job ended without ending it (cancelled, or failed for good) is ended FAILED by the periodic check, with its
// batch.completed event and its results' expiry, and no longer counts against its requester's active batches; a
// batch whose job is still to run (or to be retried) is left alone. A duplicate run of a chunk that cannot reserve
// because the first run holds the units retries instead of ending the batch QUOTA_EXCEEDED. A chunk reads the data
// set from where the batch stands, not the whole of it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { datasetId } from '../evaluation/support.js';
import { signUp } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { BATCH, CREATE_BATCH, createBatch, downloadResults, inputsJsonl, waitForBatch } from './batch-support.js';

const CHUNK_JOB = 'batch-prediction-chunk';

describe('batch chunk jobs left as the test leaves them', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ BATCH_MAX_CONCURRENT_CHUNKS: '0', BATCH_MAX_ACTIVE_PER_USER: '2' });
  });
  after(() => server.close());

  /** A second replica on the same database, running one chunk at a time: it picks up what the test left queued. */
  const startChunkWorker = () =>
    startTestServer({
      APP_SECRET: server.env.APP_SECRET!,
      DATABASE_URL: server.databaseUrl,
      BATCH_MAX_CONCURRENT_CHUNKS: '1',
      JOBS_POLLING_INTERVAL_SECONDS: '1',
    });

  it('is ended FAILED by the periodic check; one whose job may still run is not', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const slug = (await publishedMlp(server, { token: owner.token }, { sizes: [8, 6, 3] })).model.slug;
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 1000 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    const auth = { token: consumer.token };
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(5, 8, 21)));
    const stranded = await createBatch(server.url, auth, { model: slug, dataset });
    const waiting = await createBatch(server.url, auth, { model: slug, dataset });
    const jobOf = async (id: string) =>
      (await server.sql.query('SELECT chunk_job_id FROM batch_predictions WHERE id = $1', [id])).rows[0].chunk_job_id;
    const { jobs, batchPredictions } = server.app.services;
    // Its job gone for good (as when its last attempt died with its server); the other's failed with retries left.
    await jobs.cancel(CHUNK_JOB, await jobOf(stranded.id));
    await jobs.fail(CHUNK_JOB, await jobOf(waiting.id), 'an attempt that will be retried');
    const full = await server.gql(CREATE_BATCH, { input: { model: slug, dataset } }, auth);
    assert.equal(full.errors?.[0]?.extensions?.code, 'RATE_LIMITED');

    await batchPredictions.endStranded();
    const failed = (await server.gql(BATCH, { id: stranded.id }, auth)).data!.batchPrediction;
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error.code, 'INTERNAL_SERVER_ERROR');
    assert.ok(failed.completedAt && failed.resultsExpireAt);
    assert.equal((await server.gql(BATCH, { id: waiting.id }, auth)).data!.batchPrediction.status, 'QUEUED');
    const { rows: events } = await server.sql.query(
      `SELECT data->>'status' AS status FROM events WHERE type = 'batch.completed' AND data->>'id' = $1`,
      [stranded.id],
    );
    assert.deepEqual(events, [{ status: 'FAILED' }]);
    const { rows: expiry } = await server.sql.query(
      `SELECT 1 FROM pgboss.job WHERE name = 'batch-prediction-results-expiry' AND data->>'batchId' = $1`,
      [stranded.id],
    );
    assert.equal(expiry.length, 1);
    // It no longer counts against the requester's active batches.
    await createBatch(server.url, auth, { model: slug, dataset });
    // Checked again, nothing changes: it ended once.
    await batchPredictions.endStranded();
    const { rows: again } = await server.sql.query(
      `SELECT count(*)::int AS n FROM events WHERE type = 'batch.completed' AND data->>'id' = $1`,
      [stranded.id],
    );
    assert.equal(again[0].n, 1);
  });

  it('retries, not QUOTA_EXCEEDED, a run of a chunk whose units another run of it holds', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const slug = (await publishedMlp(server, { token: owner.token }, { sizes: [8, 6, 3] })).model.slug;
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 10 });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const auth = { token: consumer.token };
    const dataset = await datasetId(server, auth, inputsJsonl(randomRows(8, 8, 22)));
    const batch = await createBatch(server.url, auth, { model: slug, dataset });
    // The chunk's first run (its job since failed by a stopping server) named and took its 8 units, and still runs.
    const { rows: terms } = await server.sql.query(
      `SELECT id, price_per_prediction::text AS "unitPrice", currency, rate_limit_per_minute AS "rateLimitPerMinute",
              period FROM contracts WHERE id = $1`,
      [contract.id],
    );
    const firstRun = { predictionId: randomUUID(), contract: terms[0], units: 8 };
    await server.sql.query('UPDATE batch_predictions SET chunk_lease_ids = ARRAY[$2::uuid] WHERE id = $1', [
      batch.id,
      firstRun.predictionId,
    ]);
    const { metering } = server.app.services;
    await metering.reserve(firstRun.contract, firstRun.units, firstRun.predictionId);

    // A server that runs chunks picks the job up: 2 units left of 10, its run cannot reserve 8.
    const worker = await startChunkWorker();
    try {
      // Its attempt ends with the job failed, to be retried, and the batch still to run.
      const attempt = await until(async () => {
        const { rows } = await server.sql.query<{ status: string; message: string | null }>(
          `SELECT b.status, j.output->>'message' AS message
           FROM batch_predictions b JOIN pgboss.job j ON j.id = b.chunk_job_id WHERE b.id = $1`,
          [batch.id],
        );
        return rows[0]!.status !== 'QUEUED' || rows[0]!.message !== null ? rows[0] : undefined;
      }, 60_000);
      assert.deepEqual(attempt, { status: 'QUEUED', message: 'another run of this chunk holds its units' });
      // The first run ends without committing (as a superseded run does): its units go back, and the retry runs.
      await metering.record({
        ...firstRun,
        consumerId: consumer.id,
        apiKeyId: null,
        modelId: null,
        modelVersionId: null,
        requestId: null,
        status: 'SERVICE_UNAVAILABLE',
        latencyMs: 0,
        idempotentResponse: undefined,
      });
      const done = await waitForBatch(server.url, auth, batch.id);
      assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done));
      assert.equal(done.billedUnits, 8);
      await assertLedgerHolds(server.sql);
    } finally {
      await worker.close();
    }
  });

  it('reads a chunk from where the batch stands: the parts of the data set before it are not read', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const slug = (await publishedMlp(server, { token: owner.token }, { sizes: [8, 6, 3] })).model.slug;
    const auth = { token: owner.token };
    const PART = 1024 * 1024;
    const rows = randomRows(14_000, 8, 23);
    const lineEnds: number[] = [];
    rows.reduce((end, row) => {
      lineEnds.push(end + Buffer.byteLength(JSON.stringify({ input: row })) + 1);
      return lineEnds.at(-1)!;
    }, 0);
    assert.ok(lineEnds.at(-1)! > 2 * PART, 'the data set spans three stored parts');
    const dataset = await datasetId(server, auth, inputsJsonl(rows));
    const batch = await createBatch(server.url, auth, { model: slug, dataset });
    // As if every row up to 100 before the second part's end had run (its chunks committed): the chunks left
    // start in part 1, and the first of them ends in part 2.
    const done = lineEnds.findIndex((end) => end > 2 * PART) - 100;
    await server.sql.query(
      'UPDATE batch_predictions SET processed = $2, next_line = $2, next_offset = $3 WHERE id = $1',
      [batch.id, done, lineEnds[done - 1]],
    );
    // Part 0 is gone: a chunk that read the whole data set would fail NOT_FOUND.
    await server.sql.query('DELETE FROM dataset_parts WHERE dataset_id = $1 AND part = 0', [dataset]);
    const worker = await startChunkWorker();
    try {
      const ended = await waitForBatch(server.url, auth, batch.id);
      assert.equal(ended.status, 'SUCCEEDED', JSON.stringify(ended));
      assert.equal(ended.processed, rows.length);
      assert.equal(ended.failedRows, 0);
      const { lines } = await downloadResults(server.origin, auth, ended.resultsUrl);
      assert.deepEqual(
        lines.map((line) => line.row),
        rows.slice(done).map((_, i) => done + i),
      );
      assert.ok(lines.every((line) => line.output));
    } finally {
      await worker.close();
    }
  });
});
