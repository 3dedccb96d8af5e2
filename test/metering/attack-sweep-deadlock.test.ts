// Attack on metering's lock order: reservation batches lock contracts in id order "so no deadlocks", but the
// sweep gives units back to contracts in whatever order its UPDATE … FROM visits them (here the table's physical
// order), and so does a usage record batch that gives back failed calls' units. Right after a
// replica dies with calls on many contracts, the survivors' sweeps (interval, start, and every take-over of a
// dead call's requestId) run while their reservation batches take the same contracts: the two deadlock, and
// PostgreSQL aborts one. A reservation batch aborted fails every call in it (up to 512) with
// INTERNAL_SERVER_ERROR; a take-over's sweep aborted fails the client's retry the same way.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { ServerInstance } from '../../src/db/server-instance.js';
import { MeteringService, type BillableContract } from '../../src/metering/metering-service.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const CONTRACTS = 12;
const logger = pino({ level: 'silent' });

describe('attack: a sweep and a reservation batch over the same contracts', () => {
  let server: TestServer;
  let pool: pg.Pool;
  let consumer: SignedUpUser;
  /** In id order, the order reservation batches lock them in. */
  let contracts: BillableContract[];
  const replicas: { instance: ServerInstance; metering: MeteringService }[] = [];

  before(async () => {
    server = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token });
    consumer = await signUp(server);
    contracts = [];
    for (let i = 0; i < CONTRACTS; i++) {
      const plan = await createPlan(server, { token: owner.token }, model.slug, { name: `Plan ${i}` });
      const { id } = await accept(server, { token: consumer.token }, plan.id);
      contracts.push({ id, unitPrice: '0.002', currency: 'EUR', rateLimitPerMinute: null, period: 'MONTH' });
    }
    contracts.sort((a, b) => a.id.localeCompare(b.id));
    pool = new pg.Pool({ connectionString: server.databaseUrl, max: 8 });
  });
  after(async () => {
    for (const { metering, instance } of replicas) {
      await metering.close();
      await instance.close();
    }
    await pool.end();
    await server.close();
  });

  async function replica() {
    const instance = await ServerInstance.register(pool, logger);
    const metering = new MeteringService(pool, instance, logger, 3_600_000);
    replicas.push({ instance, metering });
    return { instance, metering };
  }

  /** Calls of one metering service whose reservations went into one batch (one statement). */
  function reserveBatch(metering: MeteringService, of: BillableContract[]) {
    const calls = of.map((contract) => ({ contract, predictionId: randomUUID() }));
    const done = Promise.allSettled(calls.map((c) => metering.reserve(c.contract, 1, c.predictionId)));
    return { calls, done };
  }

  async function waitForLockWaits(count: number): Promise<void> {
    for (const deadline = Date.now() + 5_000; ;) {
      const { rows } = await server.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0]!.n >= count) return;
      assert.ok(Date.now() < deadline, `${count} statements wait for locks`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it('a retry taking over a dead call’s requestId and a reservation batch both go through', async () => {
    const survivor = await replica();
    const retrying = await replica();
    // A replica dies holding leases on every contract but the second lowest; its last call, on the lowest, holds
    // a requestId. (The sweep visits contracts in the table's physical order, which follows their last update.)
    const doomed = await replica();
    await reserveBatch(doomed.metering, contracts.slice(2)).done;
    const requestId = `dead-call-${randomUUID()}`;
    const deadCall = randomUUID();
    await doomed.metering.claim(consumer.id, requestId, 'input', deadCall);
    await doomed.metering.reserve(contracts[0]!, 1, deadCall);
    await doomed.instance.close();

    // Another transaction holds the second lowest contract for a moment (any concurrent reservation does).
    const holder = await pool.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM contracts WHERE id = $1 FOR UPDATE', [contracts[1]!.id]);
    // The survivor's reservation batch takes the lowest contract and waits for the second…
    const batch = reserveBatch(survivor.metering, contracts);
    await waitForLockWaits(1);
    // …while the client retries the dead call on another replica: taking its requestId over, that replica
    // sweeps, giving the dead replica's units back and locking contracts in its own order.
    const failures: string[] = [];
    const retry = randomUUID();
    const takeOver = retrying.metering.claim(consumer.id, requestId, 'input', retry).then(
      () => undefined,
      (error: Error) => failures.push(`retry of the dead call: ${error.message}`),
    );
    await waitForLockWaits(2);
    await holder.query('COMMIT');
    holder.release();

    for (const outcome of await batch.done) {
      if (outcome.status === 'rejected') failures.push(`reservation: ${(outcome.reason as Error).message}`);
    }
    await takeOver;
    // The calls end (failed: their units go back, the requestId is freed); a sweep that failed is run again.
    const failedCall = (contract: BillableContract | null, predictionId: string, key: string | null) => ({
      predictionId,
      consumerId: consumer.id,
      apiKeyId: null,
      modelId: null,
      modelVersionId: null,
      contract,
      units: 1,
      status: 'INTERNAL_SERVER_ERROR',
      latencyMs: 1,
      requestId: key,
      idempotentResponse: undefined,
    });
    await Promise.all([
      ...batch.calls.map(({ contract, predictionId }) =>
        survivor.metering.record(failedCall(contract, predictionId, null)),
      ),
      retrying.metering.record(failedCall(null, retry, requestId)),
    ]);
    await retrying.metering.sweep();
    await assertLedgerHolds(server.sql);
    assert.deepEqual(failures, [], 'statements aborted as deadlock victims');
  });
});
