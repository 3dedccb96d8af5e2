// A batch on a server that is SIGKILLed mid-batch, with real processes: the chunk in flight commits nothing, the
// next server to start fails its job (long before the chunk timeout) and runs it again, and the batch completes
// with every row in its results exactly once and exactly one unit billed per row. The ledger holds after it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { datasetId } from '../evaluation/support.js';
import { signUp } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { serverProcesses } from '../support/server-process.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { createBatch, downloadResults, inputsJsonl, waitForBatch } from './batch-support.js';

const ROWS = 800;
const CHUNK = 8;
/**
 * A chunk timeout far beyond the test's waits: only the next server's start can resume the batch in time. Jobs are
 * polled for every second.
 */
const FAST_JOBS = {
  BATCH_CHUNK_TIMEOUT_SECONDS: '300',
  JOBS_POLLING_INTERVAL_SECONDS: '1',
};

describe('a batch on a server that dies', () => {
  let setup: TestServer;
  let processes: Awaited<ReturnType<typeof serverProcesses>>;

  before(async () => {
    // The setup server runs no chunk itself: only the processes under test do.
    setup = await startTestServer({ ...FAST_JOBS, BATCH_MAX_CONCURRENT_CHUNKS: '0' });
    processes = await serverProcesses('modelmarket-batch-crash-', {
      ...setup.env,
      ...FAST_JOBS,
      INFERENCE_WORKERS: '1',
      BATCH_MAX_CONCURRENT_CHUNKS: '1',
      BATCH_CHUNK_SIZE: String(CHUNK),
    });
  });
  after(async () => {
    await processes.close();
    await setup.close();
  });

  it('SIGKILL mid-batch: the next server resumes it; no row lost, none billed twice', async () => {
    const owner = await signUp(setup, { role: 'OWNER' });
    const { slug } = (await publishedMlp(setup, { token: owner.token }, { sizes: [8, 6, 3] })).model;
    const plan = await createPlan(setup, { token: owner.token }, slug, { predictionQuota: 100_000 });
    const consumer = await signUp(setup);
    const auth = { token: consumer.token };
    const contract = await accept(setup, auth, plan.id);
    const dataset = await datasetId(setup, auth, inputsJsonl(randomRows(ROWS, 8, 21)));

    const doomed = await processes.start();
    const created = await createBatch(doomed.url, auth, { model: slug, dataset });
    // Midway, preferably with a chunk's units reserved (the chunk in flight).
    for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
      const { rows } = await setup.sql.query<{ processed: number; leases: number }>(
        `SELECT processed, (SELECT count(*)::int FROM quota_leases WHERE contract_id = $2) AS leases
         FROM batch_predictions WHERE id = $1`,
        [created.id, contract.id],
      );
      if (rows[0]!.processed > 0 && rows[0]!.leases > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const exited = new Promise((resolve) => doomed.child.once('exit', resolve));
    doomed.child.kill('SIGKILL');
    await exited;
    const killed = await waitForBatch(setup.url, auth, created.id, () => true);
    assert.equal(killed.status, 'RUNNING');
    assert.ok(killed.processed > 0 && killed.processed < ROWS, JSON.stringify(killed));

    await processes.start();
    const done = await waitForBatch(setup.url, auth, created.id);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done));
    assert.equal(done.processed, ROWS);
    assert.equal(done.billedUnits, ROWS);

    const { lines } = await downloadResults(setup.origin, auth, done.resultsUrl);
    assert.deepEqual(
      lines.map((line) => line.row),
      Array.from({ length: ROWS }, (_, i) => i),
    );
    assert.ok(lines.every((line) => line.output));
    const { rows } = await setup.sql.query<{ used: number; billed: number; records: number }>(
      `SELECT predictions_used AS used,
              (SELECT coalesce(sum(billable_units), 0)::int FROM usage_records WHERE contract_id = c.id) AS billed,
              (SELECT count(*)::int FROM usage_records WHERE contract_id = c.id AND status = 'OK') AS records
       FROM contracts c WHERE id = $1`,
      [contract.id],
    );
    assert.deepEqual(rows[0], { used: ROWS, billed: ROWS, records: Math.ceil(ROWS / CHUNK) });
    await assertLedgerHolds(setup.sql);
  });
});
