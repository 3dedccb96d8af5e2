// Crash safety of metering (issue 10, rows 1 and 2): a server process SIGKILLed while its calls hold reserved
// units and requestIds. What the dead process held goes back — at the next start, or by another live replica —
// and a client replaying every requestId gets every answer, with no CONFLICT: used = billed = answered. (A
// retry taking over a dead call's requestId before any sweep ran is in leases.test.ts.)
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { startTestServer, type TestServer } from '../support/server.js';

const CALLS = 300;

interface Outcome {
  requestId: string;
  /** 'OK', the error code, or 'NO_ANSWER' when the connection died with the server. */
  code: string;
  predictionId?: string;
}

describe('metering after a SIGKILL mid-batch: leases go back, requestIds replay', () => {
  let setup: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let dataDir: string;
  const processes: ServerProcess[] = [];

  before(async () => {
    // The setup server never sweeps on its own, so that what gives leases back is the process under test.
    setup = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    owner = await signUp(setup, { role: 'OWNER' });
    slug = (await publishedMlp(setup, { token: owner.token })).model.slug;
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-crash-'));
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

  /**
   * A server process on the setup server's database and keys. A `slow` one, whose one inference worker takes one
   * call at a time, keeps the 300 calls in flight long enough to be killed among them.
   */
  async function serverProcess(slow = false): Promise<ServerProcess> {
    const server = await startServerProcess({
      ...setup.env,
      LEASE_SWEEP_INTERVAL_MS: '5000',
      DATA_DIR: path.join(dataDir, randomUUID()),
      INFERENCE_WORKERS: '1',
      ...(slow ? { INFERENCE_MAX_BATCH: '1' } : {}),
    });
    processes.push(server);
    return server;
  }

  async function consumerWithQuota(quota: number) {
    const plan = await createPlan(setup, { token: owner.token }, slug, { predictionQuota: quota });
    const consumer = await signUp(setup);
    const contract = await accept(setup, { token: consumer.token }, plan.id);
    const calls = Array.from({ length: CALLS }, (_, i) => ({
      requestId: `${contract.id}-${i}`,
      inputs: randomRows(1, 784, i),
    }));
    return { consumer, contractId: contract.id, calls };
  }

  function fire(url: string, token: string, calls: { requestId: string; inputs: number[][] }[]): Promise<Outcome[]> {
    return Promise.all(
      calls.map(async ({ requestId, inputs }): Promise<Outcome> => {
        try {
          const response = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs, requestId } } }),
          });
          const body = (await response.json()) as { data?: any; errors?: any[] };
          if (body.errors) return { requestId, code: String(body.errors[0].extensions?.code) };
          return { requestId, code: 'OK', predictionId: body.data.predict.id };
        } catch {
          return { requestId, code: 'NO_ANSWER' };
        }
      }),
    );
  }

  /** Sends the calls to `server` and SIGKILLs it once some of them hold leases; returns how many did then. */
  async function killMidBatch(
    server: ServerProcess,
    token: string,
    calls: { requestId: string; inputs: number[][] }[],
  ) {
    const exited = new Promise((resolve) => server.child.once('exit', resolve));
    const outcomes = fire(server.url, token, calls);
    let leases = 0;
    for (const deadline = Date.now() + 20_000; leases < 20 && Date.now() < deadline;) {
      leases = (await setup.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM quota_leases')).rows[0]!.n;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    server.child.kill('SIGKILL');
    await exited;
    await outcomes;
    return leases;
  }

  async function ledger(contractId: string) {
    const { rows } = await setup.sql.query<{ used: number; billed: number; billed_requests: number; leases: number }>(
      `SELECT c.predictions_used AS used,
              (SELECT coalesce(sum(billable_units), 0)::int FROM usage_records WHERE contract_id = c.id) AS billed,
              (SELECT count(DISTINCT request_id)::int FROM usage_records WHERE contract_id = c.id AND billable_units > 0)
                AS billed_requests,
              (SELECT count(*)::int FROM quota_leases WHERE contract_id = c.id) AS leases
       FROM contracts c WHERE c.id = $1`,
      [contractId],
    );
    return rows[0]!;
  }

  /** Replays every requestId once everything the dead server held is back; checks used = billed = answered. */
  async function replayAndCheck(
    url: string,
    consumer: SignedUpUser,
    contractId: string,
    calls: { requestId: string; inputs: number[][] }[],
    expectedAnswers: number,
  ) {
    const replies = await fire(url, consumer.token, calls);
    const codes = new Map<string, number>();
    for (const { code } of replies) codes.set(code, (codes.get(code) ?? 0) + 1);
    assert.equal(codes.get('CONFLICT'), undefined, `no replay may be told its call is still running: ${[...codes]}`);
    const answered = replies.filter((r) => r.code === 'OK');
    assert.equal(answered.length, expectedAnswers, `answers after the replay: ${[...codes]}`);
    assert.equal(
      answered.length + (codes.get('QUOTA_EXCEEDED') ?? 0),
      CALLS,
      `every call answered or refused: ${[...codes]}`,
    );
    const state = await ledger(contractId);
    assert.deepEqual(state, {
      used: expectedAnswers,
      billed: expectedAnswers,
      billed_requests: expectedAnswers,
      leases: 0,
    });
    // Each answered requestId was billed exactly once, under the prediction it was answered with.
    const { rows } = await setup.sql.query<{ request_id: string; prediction_id: string }>(
      'SELECT request_id, prediction_id FROM usage_records WHERE contract_id = $1 AND billable_units > 0',
      [contractId],
    );
    assert.deepEqual(
      new Map(rows.map((r) => [r.request_id, r.prediction_id])),
      new Map(answered.map((r) => [r.requestId, r.predictionId])),
    );
    await assertLedgerHolds(setup.sql);
  }

  it('quota 1000: the next start gives the dead process’s leases back and every replay is answered', async () => {
    const { consumer, contractId, calls } = await consumerWithQuota(1000);
    const leasesAtKill = await killMidBatch(await serverProcess(true), consumer.token, calls);
    assert.ok(leasesAtKill > 0, 'the server was killed while calls held reserved units');
    const restarted = await serverProcess();
    assert.equal((await ledger(contractId)).leases, 0, 'the restart gave back every lease before serving');
    await replayAndCheck(restarted.url, consumer, contractId, calls, CALLS);
  });

  it('quota 100: a live replica gives back a dead one’s units within seconds, so the replay is served exactly the whole quota', async () => {
    const { consumer, contractId, calls } = await consumerWithQuota(100);
    const [replica, doomed] = await Promise.all([serverProcess(), serverProcess(true)]);
    const leasesAtKill = await killMidBatch(doomed, consumer.token, calls);
    assert.ok(leasesAtKill > 0, 'the server was killed while calls held reserved units');
    // The replica's sweep runs every LEASE_SWEEP_INTERVAL_MS (5 s).
    let state = await ledger(contractId);
    for (const deadline = Date.now() + 15_000; state.leases > 0 && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      state = await ledger(contractId);
    }
    assert.equal(state.leases, 0, 'the surviving replica gave back every lease of the dead one');
    assert.equal(state.used, state.billed, 'quota used equals billed units once the leases are back');
    await replayAndCheck(replica.url, consumer, contractId, calls, 100);
  });
});
