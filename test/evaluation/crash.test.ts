// Evaluations and dying servers, with real processes: a licensee's run on a server that is SIGKILLed midway is
// marked FAILED ("interrupted") when the next server starts, and nothing it reserved stays leased; a server that
// stops gracefully ends its own runs the same way after their chunk in flight. The ledger holds after both.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { gqlAt, startTestServer, type TestServer } from '../support/server.js';
import { datasetId, demoMnist, EVALUATE, mnistJsonl, publishDemoMnist } from './support.js';

describe('evaluations on a server that dies', () => {
  let setup: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let dataDir: string;
  const processes: ServerProcess[] = [];

  before(async () => {
    // The setup server never sweeps on its own: what ends the runs is the processes under test.
    setup = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    owner = await signUp(setup, { role: 'OWNER' });
    slug = (await publishDemoMnist(setup, { token: owner.token })).slug;
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-evaluation-crash-'));
  });
  afterEach(async () => {
    for (const server of processes.splice(0)) {
      if (server.child.exitCode === null && server.child.signalCode === null) await stopServerProcess(server.child);
    }
  });
  after(async () => {
    await setup.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function serverProcess(): Promise<ServerProcess> {
    const server = await startServerProcess({
      ...setup.env,
      DATA_DIR: path.join(dataDir, randomUUID()),
      INFERENCE_WORKERS: '1',
      // Chunks of 8: a run of 2,000 digits is 250 chunks, long enough to stop among them.
      EVALUATION_CHUNK_SIZE: '8',
    });
    processes.push(server);
    return server;
  }

  /** A licensee with a contract, and a run of all 2,000 held-out digits started on `server`. */
  async function licenseeRun(server: ServerProcess) {
    const { evalSet } = await demoMnist();
    const plan = await createPlan(setup, { token: owner.token }, slug, { predictionQuota: 100_000 });
    const consumer = await signUp(setup);
    const contract = await accept(setup, { token: consumer.token }, plan.id);
    const dataset = await datasetId(setup, { token: consumer.token }, mnistJsonl(evalSet, evalSet.count));
    const res = await gqlAt(server.url, EVALUATE, { input: { model: slug, dataset } }, { token: consumer.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return { contractId: contract.id, evaluationId: res.data!.evaluateModelVersion.id as string };
  }

  const row = async (id: string) =>
    (
      await setup.sql.query<{ status: string; examples_evaluated: number; error: any }>(
        'SELECT status, examples_evaluated, error FROM evaluations WHERE id = $1',
        [id],
      )
    ).rows[0]!;

  /** Waits until the run has billed some chunks, and (when it can be caught) holds a chunk's lease. */
  async function midway(evaluationId: string, contractId: string) {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const { rows } = await setup.sql.query<{ leases: number }>(
        'SELECT count(*)::int AS leases FROM quota_leases WHERE contract_id = $1',
        [contractId],
      );
      if ((await row(evaluationId)).examples_evaluated > 0 && rows[0]!.leases > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    assert.ok((await row(evaluationId)).examples_evaluated > 0, 'the run never got going');
  }

  async function billed(contractId: string) {
    const { rows } = await setup.sql.query<{ used: number; billed: number }>(
      `SELECT predictions_used AS used,
              (SELECT coalesce(sum(billable_units), 0)::int FROM usage_records WHERE contract_id = c.id) AS billed
       FROM contracts c WHERE id = $1`,
      [contractId],
    );
    return rows[0]!;
  }

  it('SIGKILL midway: the next server to start marks the run interrupted and nothing stays leased', async () => {
    const doomed = await serverProcess();
    const { contractId, evaluationId } = await licenseeRun(doomed);
    await midway(evaluationId, contractId);
    const exited = new Promise((resolve) => doomed.child.once('exit', resolve));
    doomed.child.kill('SIGKILL');
    await exited;
    assert.equal((await row(evaluationId)).status, 'RUNNING', 'nobody has swept yet');

    await serverProcess();
    const ended = await row(evaluationId);
    assert.equal(ended.status, 'FAILED');
    assert.equal(ended.error.code, 'INTERRUPTED');
    const { used, billed: units } = await billed(contractId);
    assert.equal(used, units, 'the quota counts exactly the billed chunks');
    assert.equal(units % 8, 0);
    assert.ok(units >= 8 && units < 2000, String(units));
    await assertLedgerHolds(setup.sql);
  });

  it('SIGTERM midway: the stopping server ends its run as interrupted after its chunk in flight', async () => {
    const stopping = await serverProcess();
    const { contractId, evaluationId } = await licenseeRun(stopping);
    await midway(evaluationId, contractId);
    assert.equal(await stopServerProcess(stopping.child, 'SIGTERM'), 0);
    const ended = await row(evaluationId);
    assert.equal(ended.status, 'FAILED');
    assert.equal(ended.error.code, 'INTERRUPTED');
    const { used, billed: units } = await billed(contractId);
    assert.equal(used, units);
    assert.equal(units, ended.examples_evaluated, 'every chunk that ran was billed, and nothing else');
    await assertLedgerHolds(setup.sql);
  });
});
