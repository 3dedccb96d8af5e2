// Attack on the graceful stop: a predict call whose usage record is still being written when the stop gives up
// on it. The stop waits SHUTDOWN_GRACE_MS, closes the inference engine, waits 1 s more, then closes every client
// connection — but the record statement goes on (the pool closes only after it) and commits: the call is billed
// and its answer is never sent. A slow database at shutdown (a lock wait, an I/O stall: anything up to
// DATABASE_STATEMENT_TIMEOUT_MS) is enough; here a lock on usage_records holds the record until the stop has cut
// the call's connection (about 1.2 s), far within every database timeout.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('attack: a graceful stop that closes the connection of a call whose record then commits', () => {
  let setup: TestServer;
  let consumer: SignedUpUser;
  let contractId: string;
  let slug: string;
  let dataDir: string;
  let server: ServerProcess | undefined;

  before(async () => {
    setup = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    const owner = await signUp(setup, { role: 'OWNER' });
    slug = (await publishedMlp(setup, { token: owner.token })).model.slug;
    const plan = await createPlan(setup, { token: owner.token }, slug, { predictionQuota: 10 });
    consumer = await signUp(setup);
    contractId = (await accept(setup, { token: consumer.token }, plan.id)).id;
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-attack-stop-'));
  });
  after(async () => {
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      await stopServerProcess(server.child, 'SIGKILL');
    }
    await setup.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a call whose client got no answer is not billed', async () => {
    server = await startServerProcess({
      ...setup.env,
      DATA_DIR: path.join(dataDir, randomUUID()),
      INFERENCE_WORKERS: '1',
      SHUTDOWN_GRACE_MS: '200',
    });
    const blocker = new pg.Client({ connectionString: setup.databaseUrl });
    await blocker.connect();
    try {
      // The database is slow to take the record: inserts into usage_records wait for this transaction.
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE usage_records IN SHARE MODE');
      const answer = fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${consumer.token}` },
        body: JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: randomRows(1, 784, 1) } } }),
      }).then(
        async (response) => {
          const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] };
          return body.errors ? String(body.errors[0]!.extensions?.code) : 'OK';
        },
        () => 'NO_ANSWER',
      );
      // The call has run its model and its record waits on the lock.
      for (const deadline = Date.now() + 10_000; ;) {
        const { rows } = await setup.sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'usage_records'::regclass AND NOT granted`,
        );
        if (rows[0]!.n > 0) break;
        assert.ok(Date.now() < deadline, 'the call reached its usage record');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const exited = stopServerProcess(server.child, 'SIGTERM');
      const outcome = await answer;
      // The database takes the record again while the server is still stopping.
      await blocker.query('COMMIT');
      assert.equal(await exited, 0, 'the server stopped gracefully');

      const { rows } = await setup.sql.query<{ billed: number }>(
        'SELECT coalesce(sum(billable_units), 0)::int AS billed FROM usage_records WHERE contract_id = $1',
        [contractId],
      );
      assert.deepEqual(
        { outcome, billed: rows[0]!.billed },
        outcome === 'OK' ? { outcome, billed: 1 } : { outcome, billed: 0 },
        'a call is billed exactly when it was answered',
      );
    } finally {
      await blocker.end();
    }
    await assertLedgerHolds(setup.sql);
  });
});
