// One account's receivers that never answer (each attempt holds a worker for the 10 s timeout) must not delay
// another account's deliveries: an account has at most WEBHOOK_MAX_IN_FLIGHT_PER_ACCOUNT attempts in flight, its
// further jobs wait without counting as attempts, and the other workers serve the other accounts.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EventType } from '../../src/events/outbox.js';
import { signUp } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { emitEvents } from '../support/webhooks.js';

const CREATE = `mutation C($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }`;
const CAP = 2;

describe('webhook delivery fairness between accounts', () => {
  let server: TestServer;
  let receiver: http.Server;
  let origin = '';
  /** Requests to the never-answering URLs received so far. */
  let tarpitted = 0;

  before(async () => {
    receiver = http.createServer((req, res) => {
      if (req.url === '/victim') res.end('ok');
      else tarpitted++; // never answered: the sender gives up after 10 s
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    server = await startTestServer({
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      JOBS_POLLING_INTERVAL_SECONDS: '1',
      // As many workers as the attacker has endpoints' worth of slow receivers would once have filled.
      WEBHOOK_DELIVERY_CONCURRENCY: '4',
      WEBHOOK_MAX_IN_FLIGHT_PER_ACCOUNT: String(CAP),
    });
  });
  after(async () => {
    receiver.closeAllConnections();
    await server.close();
    receiver.close();
  });

  const emitTo = (accountId: string) => emitEvents(server, [{ type: EventType.ALIAS_MOVED, accountId, data: {} }]);

  it("delivers to a victim while an attacker's never-answering endpoints hold only their own share", async () => {
    const attacker = await signUp(server);
    const victim = await signUp(server);
    for (let i = 0; i < 8; i++) {
      const res = await server.gql(
        CREATE,
        { input: { url: `${origin}/tarpit/${i}`, events: ['ALIAS_MOVED'] } },
        { token: attacker.token },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
    const res = await server.gql(
      CREATE,
      { input: { url: `${origin}/victim`, events: ['ALIAS_MOVED'] } },
      { token: victim.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));

    await emitTo(attacker.id);
    // The attacker's first attempts are in flight (held by the receiver) before the victim's event exists.
    await until(async () => (tarpitted >= CAP ? true : undefined));
    await emitTo(victim.id);
    await until(async () => {
      const { rows } = await server.sql.query(
        `SELECT 1 FROM webhook_deliveries WHERE account_id = $1 AND status = 'SUCCEEDED'`,
        [victim.id],
      );
      return rows.length ? true : undefined;
    });
    // No attacker attempt has ended (each would take 10 s): the victim did not wait for one; and no more than the
    // cap of them were ever in flight.
    const { rows } = await server.sql.query(
      `SELECT count(a.*)::int AS ended, coalesce(sum(d.attempts), 0)::int AS recorded
       FROM webhook_deliveries d LEFT JOIN webhook_delivery_attempts a ON a.delivery_id = d.id
       WHERE d.account_id = $1`,
      [attacker.id],
    );
    assert.deepEqual(rows[0], { ended: 0, recorded: 0 });
    assert.equal(tarpitted, CAP);
  });
});

describe("a prediction's own webhook URL that keeps failing", () => {
  let server: TestServer;
  let receiver: http.Server;
  let url = '';
  let received = 0;

  before(async () => {
    receiver = http.createServer((_req, res) => {
      received++;
      res.statusCode = 500;
      res.end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/own`;
    server = await startTestServer({
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      JOBS_POLLING_INTERVAL_SECONDS: '1',
      WEBHOOK_DISABLE_AFTER_FAILURES: '2',
      WEBHOOK_DISABLE_AFTER_SECONDS: '0',
      WEBHOOK_RETRY_SCHEDULE_SECONDS: '3600',
    });
  });
  after(async () => {
    await server.close();
    receiver.close();
  });

  it('is not attempted once its last WEBHOOK_DISABLE_AFTER_FAILURES deliveries failed', async () => {
    const account = await signUp(server);
    const deliveryOf = async (eventNumber: number) => {
      const [eventId] = await emitEvents(server, [
        { type: EventType.PREDICTION_FAILED, accountId: account.id, data: { id: `p${eventNumber}`, webhook: url } },
      ]);
      return await until(async () => {
        const { rows } = await server.sql.query(
          `SELECT status, attempts, last_error FROM webhook_deliveries
           WHERE event_id = $1 AND (attempts > 0 OR status <> 'PENDING')`,
          [eventId],
        );
        return rows[0];
      });
    };
    for (const n of [1, 2]) assert.deepEqual((await deliveryOf(n)).attempts, 1);
    const skipped = await deliveryOf(3);
    assert.equal(skipped.status, 'FAILED');
    assert.equal(skipped.attempts, 0);
    assert.match(skipped.last_error, /the last 2 deliveries to this URL failed/);
    assert.equal(received, 2);
  });
});
