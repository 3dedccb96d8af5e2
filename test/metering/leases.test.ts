// The lease rules of metering, on a real database: what a call holds belongs to its server process, a live
// replica takes back what a dead one held, and a call whose leases were taken while it ran is never billed —
// so the same units or the same requestId are never billed twice, whatever the interleaving.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { ServerInstance } from '../../src/db/server-instance.js';
import { MeteringService, type BillableContract, type UsageRecordInput } from '../../src/metering/metering-service.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { billableContract } from '../support/licensing.js';
import { startTestServer, type TestServer } from '../support/server.js';

const logger = pino({ level: 'silent' });

function unavailable(error: { extensions?: { code?: unknown } }): true {
  assert.equal(error.extensions?.code, 'SERVICE_UNAVAILABLE');
  return true;
}

describe('metering leases: owners, take-over, and calls that lost what they held', () => {
  let server: TestServer;
  let pool: pg.Pool;
  let contract: BillableContract;
  let consumerId: string;
  const replicas: { instance: ServerInstance; metering: MeteringService }[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    // Only the replicas below sweep, when the test says so.
    server = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    ({ contract, consumerId } = await billableContract(server, 10));
    pool = new pg.Pool({ connectionString: server.databaseUrl, max: 4 });
  });
  afterEach(() => assertLedgerHolds(server.sql));
  after(async () => {
    for (const { metering, instance } of replicas) {
      await metering.close();
      await instance.close();
    }
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await pool.end();
    await server.close();
  });

  /** Another server process's metering, on the same database (`on`: a pool of its own). */
  async function replica(on = pool) {
    const instance = await ServerInstance.register(on, logger);
    const metering = new MeteringService(on, instance, logger, 3_600_000);
    replicas.push({ instance, metering });
    return { instance, metering };
  }

  const call = (predictionId: string, requestId: string | null, status = 'OK'): UsageRecordInput => ({
    predictionId,
    consumerId,
    apiKeyId: null,
    modelId: null,
    modelVersionId: null,
    contract,
    units: 4,
    status,
    latencyMs: 1,
    requestId,
    idempotentResponse: status === 'OK' && requestId ? { answer: predictionId } : undefined,
  });

  async function used(): Promise<number> {
    const { rows } = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    return rows[0].predictions_used;
  }

  it('a live replica takes back a dead one’s units; the dead one’s late record then bills nothing', async () => {
    const a = await replica();
    const b = await replica();
    const before = await used();
    const prediction = randomUUID();
    await a.metering.reserve(contract, 4, prediction);
    assert.equal(await used(), before + 4);

    // B's sweep leaves a live replica's lease alone.
    await b.metering.sweep();
    assert.equal(await used(), before + 4);

    // A loses its liveness lock (its process died, or its connection): B's sweep gives the units back.
    await a.instance.close();
    await b.metering.sweep();
    assert.equal(await used(), before);

    // A's call finishes after all: its record must not bill units that were given back.
    await assert.rejects(a.metering.record(call(prediction, null)), unavailable);
    const { rows } = await server.sql.query(
      'SELECT status, billable_units, quota_period_start FROM usage_records WHERE prediction_id = $1',
      [prediction],
    );
    assert.deepEqual(rows, [{ status: 'SERVICE_UNAVAILABLE', billable_units: 0, quota_period_start: null }]);
    assert.equal(await used(), before);
  });

  it('a requestId held by a dead replica’s call is taken over at once, and only the take-over is billed', async () => {
    const a = await replica();
    const b = await replica();
    const requestId = `take-over-${randomUUID()}`;
    const first = randomUUID();
    assert.deepEqual(await a.metering.claim(consumerId, requestId, 'hash', first), { kind: 'first' });
    await a.metering.reserve(contract, 4, first);

    await a.instance.close();
    const retry = randomUUID();
    assert.deepEqual(await b.metering.claim(consumerId, requestId, 'hash', retry), { kind: 'first' });
    await b.metering.reserve(contract, 4, retry);

    // The dead call's late record and the retry's race: only the holder of the key and its lease is billed.
    await assert.rejects(a.metering.record(call(first, requestId)), unavailable);
    await b.metering.record(call(retry, requestId));
    const { rows } = await server.sql.query(
      'SELECT prediction_id, billable_units FROM usage_records WHERE request_id = $1 AND billable_units > 0',
      [requestId],
    );
    assert.deepEqual(rows, [{ prediction_id: retry, billable_units: 4 }]);
    assert.deepEqual(await b.metering.claim(consumerId, requestId, 'hash', randomUUID()), {
      kind: 'replay',
      response: { answer: retry },
    });
  });

  it('a failed call gives its units back and frees its requestId in the record’s own statement', async () => {
    const { metering } = await replica();
    const before = await used();
    const requestId = `failed-${randomUUID()}`;
    const prediction = randomUUID();
    await metering.claim(consumerId, requestId, 'hash', prediction);
    await metering.reserve(contract, 4, prediction);
    await metering.record(call(prediction, requestId, 'MODEL_ERROR'));
    assert.equal(await used(), before);
    const retry = randomUUID();
    assert.deepEqual(await metering.claim(consumerId, requestId, 'other input', retry), { kind: 'first' });
    await metering.record(call(retry, requestId, 'BAD_USER_INPUT'));
  });

  it('the admin ledger check counts leases of live servers, and reports those of dead ones until they are back', async () => {
    const a = await replica();
    const b = await replica();
    const prediction = randomUUID();
    await a.metering.claim(consumerId, `ledger-${prediction}`, 'hash', prediction);
    await a.metering.reserve(contract, 4, prediction);
    const live = await b.metering.verifyLedger();
    assert.deepEqual(
      { holds: live.holds, discrepancies: live.discrepancies, liveLeases: live.liveLeases },
      { holds: true, discrepancies: [], liveLeases: 1 },
    );
    await a.instance.close();
    const dead = await b.metering.verifyLedger();
    assert.deepEqual(
      { holds: dead.holds, orphanedLeases: dead.orphanedLeases, stuckRequestIds: dead.stuckRequestIds },
      { holds: false, orphanedLeases: 1, stuckRequestIds: 1 },
    );
    await b.metering.sweep();
    const swept = await b.metering.verifyLedger();
    assert.deepEqual(
      { holds: swept.holds, orphanedLeases: swept.orphanedLeases, stuckRequestIds: swept.stuckRequestIds },
      { holds: true, orphanedLeases: 0, stuckRequestIds: 0 },
    );
  });

  /**
   * A replica whose client gives up on a statement after 300 ms while PostgreSQL still runs it: a stand-in for any
   * failure that leaves a statement's outcome unknown (connection reset, a frozen database resumed, a read timeout).
   */
  async function impatientReplica() {
    const impatient = new pg.Pool({ connectionString: server.databaseUrl, max: 4, query_timeout: 300 });
    closers.push(() => impatient.end());
    return replica(impatient);
  }

  /** Holds `sql` in an open transaction while `run` runs, then ends it (commit or rollback). */
  async function whileHeld(sql: string, values: unknown[], end: 'COMMIT' | 'ROLLBACK', run: () => Promise<void>) {
    const blocker = await server.sql.connect();
    await blocker.query('BEGIN');
    await blocker.query(sql, values);
    try {
      await run();
    } finally {
      await blocker.query(end);
      blocker.release();
    }
  }

  /** Makes what a call holds look older, as a minute passing would. */
  async function age(prediction: string) {
    await server.sql.query(
      `UPDATE quota_leases SET created_at = created_at - interval '2 minutes' WHERE prediction_id = $1`,
      [prediction],
    );
    await server.sql.query(
      `UPDATE idempotency_keys SET created_at = created_at - interval '2 minutes' WHERE prediction_id = $1`,
      [prediction],
    );
  }

  it('a reservation whose outcome was lost with its connection, then committed, goes back once its call ended', async () => {
    const { metering } = await impatientReplica();
    const before = await used();
    const prediction = randomUUID();
    // A busy contract row: the reservation waits, the client gives up, the statement commits afterwards.
    await whileHeld('SELECT 1 FROM contracts WHERE id = $1 FOR NO KEY UPDATE', [contract.id], 'COMMIT', async () => {
      await assert.rejects(metering.reserve(contract, 4, prediction));
      await metering.record(call(prediction, null, 'INTERNAL_SERVER_ERROR'));
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await used(), before + 4, 'the reservation committed after its call ended');
    // Held by a live server for a call it no longer runs: its own sweep takes it once it is a minute old.
    await metering.sweep();
    assert.equal(await used(), before + 4, 'a lease younger than a minute is left alone');
    await age(prediction);
    await metering.sweep();
    assert.equal(await used(), before);
  });

  it('a requestId whose claim outcome was lost with its connection is freed once its call ended', async () => {
    const { metering } = await impatientReplica();
    const requestId = `lost-claim-${randomUUID()}`;
    const prediction = randomUUID();
    // A concurrent first claim of the same key, not yet committed, makes this claim wait; the client gives up.
    await whileHeld(
      `INSERT INTO idempotency_keys (caller_id, request_id, input_hash, prediction_id, server_instance)
       VALUES ($1, $2, 'hash', $3, NULL)`,
      [consumerId, requestId, randomUUID()],
      'ROLLBACK',
      async () => {
        await assert.rejects(metering.claim(consumerId, requestId, 'hash', prediction));
        await metering.record(call(prediction, requestId, 'INTERNAL_SERVER_ERROR'));
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const held = () =>
      server.sql.query('SELECT prediction_id FROM idempotency_keys WHERE caller_id = $1 AND request_id = $2', [
        consumerId,
        requestId,
      ]);
    assert.deepEqual((await held()).rows, [{ prediction_id: prediction }], 'the claim committed after its call ended');
    await age(prediction);
    await metering.sweep();
    assert.deepEqual((await held()).rows, []);
  });

  it('a process whose liveness lock the database dropped does not take back its own running calls', async () => {
    // The lock connection goes through a proxy whose database side is closed while the client side stays open and
    // silent: PostgreSQL drops the lock at once, the process notices only when its ping times out.
    const upstreams = new Set<net.Socket>();
    const clients = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(new URL(server.databaseUrl).port || 5432), '127.0.0.1');
      upstreams.add(upstream);
      clients.add(client);
      client.pipe(upstream).pipe(client);
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    closers.push(
      () =>
        new Promise((resolve) => {
          proxy.close(resolve);
          for (const client of clients) client.destroy();
        }),
    );
    const viaProxy = new URL(server.databaseUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String((proxy.address() as net.AddressInfo).port);
    const lockPool = new pg.Pool({ connectionString: viaProxy.toString() });
    closers.push(() => lockPool.end());
    const instance = await ServerInstance.register(lockPool, logger);
    const metering = new MeteringService(pool, instance, logger, 3_600_000);
    replicas.push({ instance, metering });

    const before = await used();
    const prediction = randomUUID();
    await metering.reserve(contract, 4, prediction);
    for (const upstream of upstreams) upstream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await metering.sweep();
    // The call, running normally, keeps its lease and is billed.
    await metering.record(call(prediction, null, 'OK'));
    assert.equal(await used(), before + 4);
    const { rows } = await server.sql.query('SELECT billable_units FROM usage_records WHERE prediction_id = $1', [
      prediction,
    ]);
    assert.deepEqual(rows, [{ billable_units: 4 }]);
  });
});
