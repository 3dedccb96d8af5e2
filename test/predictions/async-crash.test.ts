// A server process SIGKILLed with a queued prediction: its reserved units are the prediction's, not the dead
// process's, so the restarted server's sweep of dead servers' leases leaves them, runs the prediction and bills it
// exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signUp } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { serverProcesses, stopServerProcess } from '../support/server-process.js';
import { gqlAt, startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

describe('an asynchronous prediction survives the SIGKILL of the server that queued it', () => {
  let setup: TestServer;
  let processes: Awaited<ReturnType<typeof serverProcesses>>;

  before(async () => {
    // The setup server runs no prediction and never sweeps on its own: the processes under test do both.
    setup = await startTestServer({ ASYNC_PREDICTIONS_WORKERS: '0', LEASE_SWEEP_INTERVAL_MS: '3600000' });
    processes = await serverProcesses('modelmarket-async-crash-', setup.env);
  });
  after(async () => {
    await processes.close();
    await setup.close();
  });

  const liveServers = async () =>
    (await setup.sql.query('SELECT count(*)::int AS n FROM mm_live_server_instances()')).rows[0].n as number;

  it('runs it after restart, billed once', async () => {
    const owner = await signUp(setup, { role: 'OWNER' });
    const { model } = await publishedMlp(setup, { token: owner.token });
    const plan = await createPlan(setup, { token: owner.token }, model.slug, { predictionQuota: 10 });
    const consumer = await signUp(setup);
    const contract = await accept(setup, { token: consumer.token }, plan.id);
    const aloneLive = await liveServers();

    const first = await processes.start({ ASYNC_PREDICTIONS_WORKERS: '0' });
    const created = await gqlAt(
      first.url,
      `mutation($input: CreatePredictionInput!) { createPrediction(input: $input) { id status } }`,
      { input: { model: model.slug, inputs: randomRows(3, 784, 1) } },
      { token: consumer.token },
    );
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    const { id } = created.data!.createPrediction;
    await stopServerProcess(first.child, 'SIGKILL');
    // Dead for the database (its liveness lock gone) before the next server's start-up sweep looks.
    await until(async () => ((await liveServers()) > aloneLive ? undefined : true));
    const held = await setup.sql.query('SELECT units, server_instance FROM quota_leases WHERE prediction_id = $1', [
      id,
    ]);
    assert.deepEqual(held.rows, [{ units: 3, server_instance: null }]);

    // Sweeps the dead server's leases at start (and every 200 ms), then works the queue.
    const second = await processes.start({
      ASYNC_PREDICTIONS_WORKERS: '2',
      LEASE_SWEEP_INTERVAL_MS: '200',
      JOBS_POLLING_INTERVAL_SECONDS: '1',
    });
    const status = await until(async () => {
      const res = await gqlAt(
        second.url,
        `query($id: ID!) { prediction(id: $id) { status error { code } } }`,
        { id },
        { token: consumer.token },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const { status } = res.data!.prediction as { status: string };
      return status === 'QUEUED' || status === 'RUNNING' ? undefined : status;
    }, 60_000);
    assert.equal(status, 'SUCCEEDED');
    const { rows } = await setup.sql.query(
      'SELECT status, billable_units FROM usage_records WHERE prediction_id = $1',
      [id],
    );
    assert.deepEqual(rows, [{ status: 'OK', billable_units: 3 }]);
    const used = await setup.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    assert.equal(used.rows[0].predictions_used, 3);
    await assertLedgerHolds(setup.sql);
  });
});
