// Attack on metering's crash safety: a usage record that committed, but whose answer from PostgreSQL never
// reached the server (the connection broke after the commit: a network cut, a database host going down, a
// terminated backend). The server cannot tell this from a record that did not commit, answers the call
// SERVICE_UNAVAILABLE ("its answer is withheld; retry it") — and the call is billed all the same. A client
// without a requestId that retries, as told, pays twice for one answer.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { ServerInstance } from '../../src/db/server-instance.js';
import { MeteringService, type BillableContract } from '../../src/metering/metering-service.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { billableContract } from '../support/licensing.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** PostgreSQL's ReadyForQuery (idle): sent once the statement's transaction has committed. */
const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);

/**
 * A TCP proxy to PostgreSQL that, once armed, lets the next usage-record statement through, swallows its answer
 * until PostgreSQL says it is ready for the next query (the record has committed), then cuts the connection.
 */
async function answerCuttingProxy(target: URL) {
  let armed = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    let cutting = false;
    let swallowed = Buffer.alloc(0);
    client.on('data', (chunk) => {
      if (armed && chunk.includes('mm_record_usage_batch')) {
        armed = false;
        cutting = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!cutting) return void client.write(chunk);
      swallowed = Buffer.concat([swallowed, chunk]);
      if (swallowed.includes(READY_FOR_QUERY)) {
        client.destroy();
        upstream.destroy();
      }
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => {
        b.destroy();
        sockets.delete(a);
      });
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  return {
    url: url.toString(),
    arm: () => void (armed = true),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

describe('attack: a usage record that committed but whose answer was lost', () => {
  let server: TestServer;
  let contract: BillableContract;
  let consumerId: string;

  before(async () => {
    server = await startTestServer({ LEASE_SWEEP_INTERVAL_MS: '3600000' });
    ({ contract, consumerId } = await billableContract(server, 10));
  });
  after(() => server.close());

  it('a call answered SERVICE_UNAVAILABLE is never billed', async () => {
    const proxy = await answerCuttingProxy(new URL(server.databaseUrl));
    const pool = new pg.Pool({ connectionString: proxy.url, max: 2 });
    pool.on('error', () => undefined);
    const logger = pino({ level: 'silent' });
    const instance = await ServerInstance.register(pool, logger);
    const metering = new MeteringService(pool, instance, logger, 3_600_000);
    try {
      const predictionId = randomUUID();
      await metering.reserve(contract, 1, predictionId);
      proxy.arm();
      const outcome = await metering
        .record({
          predictionId,
          consumerId,
          apiKeyId: null,
          modelId: null,
          modelVersionId: null,
          contract,
          units: 1,
          status: 'OK',
          latencyMs: 1,
          requestId: null,
          idempotentResponse: undefined,
        })
        .then(
          () => 'answered',
          (error: { extensions?: { code?: unknown } }) => String(error.extensions?.code),
        );
      const { rows } = await server.sql.query<{ status: string; billable_units: number }>(
        'SELECT status, billable_units FROM usage_records WHERE prediction_id = $1',
        [predictionId],
      );
      // Either the call is answered and billed once, or refused and billed nothing: never refused yet billed.
      assert.deepEqual(
        { outcome, billed: rows.reduce((sum, r) => sum + r.billable_units, 0) },
        outcome === 'answered' ? { outcome, billed: 1 } : { outcome, billed: 0 },
        `the call was answered ${outcome} while its usage records are ${JSON.stringify(rows)}`,
      );
    } finally {
      await metering.close();
      await instance.close();
      await pool.end();
      await proxy.close();
    }
    await assertLedgerHolds(server.sql);
  });
});
