// Webhooks over real HTTP, to a real receiver on 127.0.0.1: endpoints and their secrets, signed deliveries checked
// with the README's own verification code (TypeScript and openssl), retries on the configured schedule, redirects
// not followed, automatic disabling with its event, redelivery, ownership, and the private-network refusals of a
// server that does not allow them (at creation, and at delivery for a name that resolves to loopback); the sweep
// of deliveries left without a job, and the retention of events.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { EVENT_TYPES, EventType } from '../../src/events/outbox.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import {
  emitEvents,
  readmeVerification,
  readmeVerifier,
  startReceiver,
  type VerifyWebhook,
} from '../support/webhooks.js';

const ENDPOINT_FIELDS = 'id url events description status disabledReason consecutiveFailures createdAt updatedAt';
const CREATE = `mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { ${ENDPOINT_FIELDS} } } }`;
const DELIVERIES = `query($endpoint: ID, $status: WebhookDeliveryStatus, $first: Int, $after: String) {
  webhookDeliveries(endpoint: $endpoint, filter: { status: $status }, first: $first, after: $after) {
    edges { cursor node { id messageId eventId eventType endpointId url status attempts lastResponseCode lastLatencyMs
      lastError nextAttemptAt attemptLog { number at responseCode latencyMs error } } }
    pageInfo { hasNextPage endCursor } } }`;

async function createEndpoint(server: TestServer, user: SignedUpUser, url: string, events: string[]) {
  const res = await server.gql(CREATE, { input: { url, events } }, { token: user.token });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createWebhookEndpoint as { secret: string; endpoint: Record<string, any> & { id: string } };
}

async function deliveriesOf(server: TestServer, user: SignedUpUser, endpoint: string | null, status?: string) {
  const res = await server.gql(DELIVERIES, { endpoint, status, first: 50 }, { token: user.token });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return (res.data!.webhookDeliveries.edges as { node: any }[]).map((edge) => edge.node);
}

const ADMIN = { email: 'admin@webhooks.test', password: 'webhooks admin phrase' };

describe('webhooks', () => {
  let server: TestServer;
  let strict: TestServer;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let verifyWebhook: VerifyWebhook;
  let scratch: string;

  before(async () => {
    receiver = await startReceiver();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'webhooks-test-'));
    verifyWebhook = await readmeVerifier(scratch);
    [server, strict] = await Promise.all([
      startTestServer({
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
        WEBHOOK_RETRY_SCHEDULE_SECONDS: '1,1,1',
        WEBHOOK_DISABLE_AFTER_FAILURES: '4',
        WEBHOOK_DISABLE_AFTER_SECONDS: '0',
        JOBS_POLLING_INTERVAL_SECONDS: '1',
        WEBHOOK_SWEEP_INTERVAL_SECONDS: '1',
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
      }),
      startTestServer({ JOBS_POLLING_INTERVAL_SECONDS: '1' }),
    ]);
  });
  after(async () => {
    await Promise.all([server?.close(), strict?.close()]);
    await receiver.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('offers every outbox event type in GraphQL, and no other', async () => {
    const res = await server.gql('{ __type(name: "WebhookEventType") { enumValues { name } } }');
    const names = (res.data!.__type.enumValues as { name: string }[]).map((value) => value.name);
    assert.deepEqual(names.sort(), Object.keys(EventType).sort());
    // A body's `type` reads as its GraphQL name: prediction.completed is PREDICTION_COMPLETED.
    assert.deepEqual(EVENT_TYPES.map((type) => type.replace('.', '_').toUpperCase()).sort(), names);
  });

  it('creates, lists, updates, rotates and deletes endpoints; a secret is shown only when made', async () => {
    const user = await signUp(server);
    const created = await createEndpoint(server, user, receiver.url('/ok'), ['CONTRACT_APPROVED', 'CONTRACT_APPROVED']);
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]{32}$/);
    assert.equal(created.endpoint.status, 'ACTIVE');

    const listed = await server.gql(`{ webhookEndpoints { ${ENDPOINT_FIELDS} } }`, {}, { token: user.token });
    assert.deepEqual(listed.data!.webhookEndpoints, [created.endpoint]);
    assert.deepEqual(created.endpoint.events, ['CONTRACT_APPROVED']);
    const stored = await server.sql.query('SELECT secret_sealed FROM webhook_endpoints WHERE id = $1', [
      created.endpoint.id,
    ]);
    assert.ok(!stored.rows[0].secret_sealed.includes(created.secret.slice(6)), 'the secret is stored sealed');

    const updated = await server.gql(
      `mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { events: [QUOTA_THRESHOLD, ALIAS_MOVED], description: " Billing " }) { events description } }`,
      { id: created.endpoint.id },
      { token: user.token },
    );
    assert.deepEqual(updated.data!.updateWebhookEndpoint, {
      events: ['QUOTA_THRESHOLD', 'ALIAS_MOVED'],
      description: 'Billing',
    });

    const rotated = await server.gql(
      `mutation($id: ID!) { rotateWebhookEndpointSecret(id: $id) { secret endpoint { id } } }`,
      { id: created.endpoint.id },
      { token: user.token },
    );
    assert.match(rotated.data!.rotateWebhookEndpointSecret.secret, /^whsec_/);
    assert.notEqual(rotated.data!.rotateWebhookEndpointSecret.secret, created.secret);

    for (const [input, field] of [
      [{ url: 'ftp://example.com/x', events: ['ALIAS_MOVED'] }, 'input.url'],
      [{ url: receiver.url('/ok'), events: [] }, 'input.events'],
      [{ url: receiver.url('/ok'), events: ['ALIAS_MOVED'], description: 'x'.repeat(501) }, 'input.description'],
    ] as const) {
      const refused = await server.gql(CREATE, { input }, { token: user.token });
      assert.equal(expectError(refused, 'BAD_USER_INPUT').extensions?.field, field);
    }

    const deleted = await server.gql(
      `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }`,
      { id: created.endpoint.id },
      { token: user.token },
    );
    assert.equal(deleted.data!.deleteWebhookEndpoint.id, created.endpoint.id);
    const actions = await server.sql.query<{ action: string }>(
      `SELECT action FROM audit_events WHERE target_id = $1 ORDER BY chain_seq`,
      [created.endpoint.id],
    );
    assert.deepEqual(
      actions.rows.map((row) => row.action),
      [
        'webhook_endpoint.created',
        'webhook_endpoint.updated',
        'webhook_endpoint.secret_rotated',
        'webhook_endpoint.deleted',
      ],
    );
  });

  it("delivers an event signed, verifiable with the README's TypeScript and openssl; once per event", async () => {
    const user = await signUp(server);
    const other = await signUp(server);
    const { secret, endpoint } = await createEndpoint(server, user, receiver.url('/ok-signed'), ['CONTRACT_APPROVED']);
    await createEndpoint(server, user, receiver.url('/ok-unsubscribed'), ['ALIAS_MOVED']);
    const [eventId] = await emitEvents(server, [
      { type: EventType.CONTRACT_APPROVED, accountId: user.id, data: { contractId: 'c-1' } },
      { type: EventType.CONTRACT_APPROVED, accountId: other.id, data: { contractId: 'c-2' } },
    ]);
    const delivery = await until(() => receiver.received.find((r) => r.path === '/ok-signed'));
    const headers = delivery.headers as Record<string, string>;
    assert.equal(headers['webhook-id'], `msg_${eventId}`);
    assert.equal(verifyWebhook(secret, headers, delivery.body), true);
    assert.equal(verifyWebhook(secret, headers, delivery.body.replace('c-1', 'c-9')), false);
    assert.equal(verifyWebhook(`whsec_${Buffer.alloc(24).toString('base64')}`, headers, delivery.body), false);
    const body = JSON.parse(delivery.body);
    assert.equal(body.type, 'contract.approved');
    assert.deepEqual(body.data, { contractId: 'c-1' });
    assert.ok(!Number.isNaN(Date.parse(body.timestamp)));

    const { shell } = await readmeVerification();
    await writeFile(path.join(scratch, 'body.json'), delivery.body);
    const { stdout } = await promisify(execFile)('bash', ['-c', shell], {
      cwd: scratch,
      env: {
        ...process.env,
        SECRET: secret,
        WEBHOOK_ID: headers['webhook-id'],
        WEBHOOK_TIMESTAMP: headers['webhook-timestamp'],
      },
    });
    assert.equal(`v1,${stdout.trim()}`, headers['webhook-signature']);

    const [logged] = await until(async () => {
      const rows = await deliveriesOf(server, user, endpoint.id);
      return rows[0]?.status === 'SUCCEEDED' ? rows : undefined;
    });
    assert.equal(logged.attempts, 1);
    assert.equal(logged.lastResponseCode, 200);
    assert.equal(logged.eventType, 'CONTRACT_APPROVED');
    // A dispatch that runs again (after a failure half-way) makes no second delivery.
    await server.sql.query('UPDATE events SET dispatched_at = NULL WHERE id = $1', [eventId]);
    await server.app.services.jobs.send('event-dispatch', { eventId });
    server.app.services.events.wake();
    await until(async () => {
      const { rows } = await server.sql.query('SELECT dispatched_at FROM events WHERE id = $1', [eventId]);
      return rows[0].dispatched_at ? true : undefined;
    });
    const counts = await server.sql.query(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE event_id = $1`, [
      eventId,
    ]);
    assert.equal(counts.rows[0].n, 1);
    assert.equal(receiver.received.filter((r) => r.path.startsWith('/ok-unsubscribed')).length, 0);
  });

  it('retries a failing receiver on the schedule: the 4th attempt succeeds, the log shows all 4', async () => {
    const user = await signUp(server);
    const { endpoint } = await createEndpoint(server, user, receiver.url('/flaky'), ['QUOTA_THRESHOLD']);
    await emitEvents(server, [{ type: EventType.QUOTA_THRESHOLD, accountId: user.id, data: { percent: 80 } }]);
    const [delivery] = await until(async () => {
      const rows = await deliveriesOf(server, user, endpoint.id, 'SUCCEEDED');
      return rows.length ? rows : undefined;
    });
    assert.equal(delivery.attempts, 4);
    assert.deepEqual(
      delivery.attemptLog.map((attempt: { responseCode: number }) => attempt.responseCode),
      [500, 500, 500, 204],
    );
    const ids = new Set(receiver.received.filter((r) => r.path === '/flaky').map((r) => r.headers['webhook-id']));
    assert.deepEqual([...ids], [delivery.messageId]);
  });

  it('follows no redirect; an endpoint failing its whole schedule is disabled and the account told', async () => {
    const user = await signUp(server);
    const watcher = await createEndpoint(server, user, receiver.url('/ok-watcher'), ['WEBHOOK_ENDPOINT_DISABLED']);
    const moved = await createEndpoint(server, user, receiver.url('/moved'), ['ALIAS_MOVED']);
    await emitEvents(server, [{ type: EventType.ALIAS_MOVED, accountId: user.id, data: { alias: 'stable' } }]);
    const [failed] = await until(async () => {
      const rows = await deliveriesOf(server, user, moved.endpoint.id, 'FAILED');
      return rows.length ? rows : undefined;
    });
    assert.equal(failed.attempts, 4);
    assert.equal(failed.lastResponseCode, 302);
    assert.match(failed.lastError, /redirect/);
    assert.equal(receiver.received.filter((r) => r.path === '/ok-after-redirect').length, 0);

    const notice = await until(() => receiver.received.find((r) => r.path === '/ok-watcher'));
    const body = JSON.parse(notice.body);
    assert.equal(body.type, 'webhook_endpoint.disabled');
    assert.equal(body.data.endpointId, moved.endpoint.id);
    assert.equal(verifyWebhook(watcher.secret, notice.headers as Record<string, string>, notice.body), true);
    const listed = await server.gql(`{ webhookEndpoints { id status disabledReason } }`, {}, { token: user.token });
    const disabled = listed.data!.webhookEndpoints.find((e: { id: string }) => e.id === moved.endpoint.id);
    assert.equal(disabled.status, 'DISABLED');
    assert.match(disabled.disabledReason, /4 attempts in a row failed/);

    // Redelivery of a disabled endpoint's delivery waits for it to be enabled.
    const REDELIVER = `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id status messageId } }`;
    expectError(await server.gql(REDELIVER, { id: failed.id }, { token: user.token }), 'CONFLICT');
    await server.gql(
      `mutation($id: ID!) { enableWebhookEndpoint(id: $id) { id } }`,
      { id: moved.endpoint.id },
      { token: user.token },
    );
    await server.gql(
      `mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { url: "${receiver.url('/ok-redelivered')}" }) { id } }`,
      { id: moved.endpoint.id },
      { token: user.token },
    );
    const redelivered = await server.gql(REDELIVER, { id: failed.id }, { token: user.token });
    assert.equal(redelivered.data!.redeliverWebhook.status, 'PENDING');
    const again = await until(() => receiver.received.find((r) => r.path === '/ok-redelivered'));
    assert.equal(again.headers['webhook-id'], failed.messageId);
    const [done] = await until(async () => {
      const rows = await deliveriesOf(server, user, moved.endpoint.id, 'SUCCEEDED');
      return rows.length ? rows : undefined;
    });
    assert.equal(done.attempts, 5);
  });

  it("delivers to a prediction's own URL with the account's default secret, when its type is asked for", async () => {
    const user = await signUp(server);
    const own = receiver.url('/ok-own');
    await emitEvents(server, [
      {
        type: EventType.PREDICTION_FAILED,
        accountId: user.id,
        data: { predictionId: 'p-1', webhook: own, webhookEvents: ['prediction.completed'] },
      },
    ]);
    const rotated = await server.gql(`mutation { rotateDefaultWebhookSecret { secret } }`, {}, { token: user.token });
    const secret = rotated.data!.rotateDefaultWebhookSecret.secret as string;
    await emitEvents(server, [
      {
        type: EventType.PREDICTION_COMPLETED,
        accountId: user.id,
        data: { predictionId: 'p-2', webhook: own, webhookEvents: ['prediction.completed'] },
      },
    ]);
    const delivery = await until(() => receiver.received.find((r) => r.path === '/ok-own'));
    assert.equal(JSON.parse(delivery.body).data.predictionId, 'p-2');
    assert.equal(verifyWebhook(secret, delivery.headers as Record<string, string>, delivery.body), true);
    const rows = await deliveriesOf(server, user, null);
    assert.deepEqual(
      rows.map((row) => [row.endpointId, row.url]),
      [[null, own]],
    );
  });

  it('holds an account to WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT endpoints (20 by default)', async () => {
    const user = await signUp(server);
    const input = { url: receiver.url('/ok-many'), events: ['ALIAS_MOVED'] };
    const made = await Promise.all(
      Array.from({ length: 21 }, () => server.gql(CREATE, { input }, { token: user.token })),
    );
    assert.equal(made.filter((res) => res.errors === undefined).length, 20);
    assert.match(
      expectError(
        made.find((res) => res.errors)!,
        'BAD_USER_INPUT',
      ).message,
      /At most 20/,
    );
  });

  it("keeps each account's endpoints to itself", async () => {
    const owner = await signUp(server);
    const stranger = await signUp(server);
    const { endpoint } = await createEndpoint(server, owner, receiver.url('/ok-private'), ['ALIAS_MOVED']);
    for (const mutation of ['disableWebhookEndpoint', 'deleteWebhookEndpoint', 'rotateWebhookEndpointSecret']) {
      const selection = mutation === 'rotateWebhookEndpointSecret' ? '{ secret }' : '{ id }';
      const res = await server.gql(
        `mutation($id: ID!) { ${mutation}(id: $id) ${selection} }`,
        { id: endpoint.id },
        { token: stranger.token },
      );
      expectError(res, 'NOT_FOUND');
    }
    expectError(await server.gql(DELIVERIES, { endpoint: endpoint.id }, { token: stranger.token }), 'NOT_FOUND');
    const theirs = await server.gql(
      `query($a: ID) { webhookEndpoints(account: $a) { id } }`,
      { a: owner.id },
      { token: stranger.token },
    );
    expectError(theirs, 'FORBIDDEN');
    const mine = await server.gql(`{ webhookEndpoints { id } }`, {}, { token: stranger.token });
    assert.deepEqual(mine.data!.webhookEndpoints, []);
  });

  it('refuses private addresses without WEBHOOK_ALLOW_PRIVATE_NETWORKS: at creation, and at delivery by name', async () => {
    const user = await signUp(strict);
    for (const url of [
      'http://127.0.0.1/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://10.1.2.3/hook',
      'http://[::1]/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://0x7f000001/hook',
      'http://[64:ff9b::169.254.169.254]/latest/meta-data',
      'http://[2002:a00:1::1]/hook',
    ]) {
      const res = await strict.gql(CREATE, { input: { url, events: ['ALIAS_MOVED'] } }, { token: user.token });
      assert.equal(expectError(res, 'BAD_USER_INPUT').extensions?.field, 'input.url', url);
    }
    const { endpoint } = await createEndpoint(strict, user, `http://localhost:${receiver.port}/ok-rebound`, [
      'ALIAS_MOVED',
    ]);
    await emitEvents(strict, [{ type: EventType.ALIAS_MOVED, accountId: user.id, data: { alias: 'stable' } }]);
    const [refused] = await until(async () => {
      const rows = await deliveriesOf(strict, user, endpoint.id, 'FAILED');
      return rows.length ? rows : undefined;
    });
    assert.equal(refused.attempts, 1, 'a refused address is not retried');
    assert.equal(refused.lastResponseCode, null);
    assert.match(refused.lastError, /refused: the URL leads to (127\.0\.0\.1|::1)/);
    assert.equal(receiver.received.filter((r) => r.path === '/ok-rebound').length, 0);
  });

  it("lets an admin read, not change, another account's endpoints and deliveries", async () => {
    const owner = await signUp(server);
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const { endpoint } = await createEndpoint(server, owner, receiver.url('/ok-audited'), ['ALIAS_MOVED']);
    await emitEvents(server, [{ type: EventType.ALIAS_MOVED, accountId: owner.id, data: { alias: 'stable' } }]);
    const [delivery] = await until(async () => {
      const rows = await deliveriesOf(server, owner, endpoint.id, 'SUCCEEDED');
      return rows.length ? rows : undefined;
    });

    const listed = await server.gql(
      `query($a: ID) { webhookEndpoints(account: $a) { ${ENDPOINT_FIELDS} } }`,
      { a: owner.id },
      { token: admin.token },
    );
    assert.deepEqual(listed.data!.webhookEndpoints, [endpoint]);
    assert.deepEqual(
      (await deliveriesOf(server, admin, endpoint.id)).map((row) => row.id),
      [delivery.id],
    );

    for (const [mutation, args, selection] of [
      ['updateWebhookEndpoint', `id: $id, input: { url: "${receiver.url('/ok-admin')}" }`, '{ id }'],
      ['disableWebhookEndpoint', 'id: $id', '{ id }'],
      ['rotateWebhookEndpointSecret', 'id: $id', '{ secret }'],
      ['deleteWebhookEndpoint', 'id: $id', '{ id }'],
    ]) {
      const res = await server.gql(
        `mutation($id: ID!) { ${mutation}(${args}) ${selection} }`,
        { id: endpoint.id },
        { token: admin.token },
      );
      expectError(res, 'FORBIDDEN');
    }
    const redelivered = await server.gql(
      `mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }`,
      { id: delivery.id },
      { token: admin.token },
    );
    expectError(redelivered, 'FORBIDDEN');

    const unchanged = await server.gql(`{ webhookEndpoints { ${ENDPOINT_FIELDS} } }`, {}, { token: owner.token });
    assert.deepEqual(unchanged.data!.webhookEndpoints, [endpoint]);
    const [after] = await deliveriesOf(server, owner, endpoint.id);
    assert.deepEqual([after.status, after.attempts], ['SUCCEEDED', 1]);
    const reads = await server.sql.query<{ target_id: string }>(
      `SELECT target_id FROM audit_events WHERE action = 'admin.read' AND target_id = ANY($1) ORDER BY chain_seq`,
      [[owner.id, endpoint.id]],
    );
    assert.deepEqual(
      reads.rows.map((row) => row.target_id),
      [owner.id, endpoint.id],
    );
  });

  it('gives a job again to an event and a PENDING delivery whose jobs gave up (their retries spent)', async () => {
    const user = await signUp(server);
    const { endpoint } = await createEndpoint(server, user, receiver.url('/ok-stranded'), ['ALIAS_MOVED']);
    // As the outbox leaves an event whose dispatch job failed for good, and a delivery whose second attempt was due
    // an hour ago and whose job failed for good: rows without a live job.
    const insertEvent = (dispatched: boolean) =>
      server.sql.query<{ id: string }>(
        `INSERT INTO events (type, account_id, data, dispatched_at)
         VALUES ('alias.moved', $1, '{}', ${dispatched ? 'now()' : 'NULL'}) RETURNING id`,
        [user.id],
      );
    const {
      rows: [undispatched],
    } = await insertEvent(false);
    const {
      rows: [dispatched],
    } = await insertEvent(true);
    const {
      rows: [stranded],
    } = await server.sql.query<{ id: string }>(
      `INSERT INTO webhook_deliveries (event_id, account_id, endpoint_id, url, attempts, next_attempt_at)
       VALUES ($1, $2, $3, $4, 1, now() - interval '1 hour') RETURNING id`,
      [dispatched!.id, user.id, endpoint.id, endpoint.url],
    );
    const done = await until(async () => {
      const rows = await deliveriesOf(server, user, endpoint.id, 'SUCCEEDED');
      return rows.length === 2 ? rows : undefined;
    });
    const byEvent = new Map(done.map((row) => [row.eventId, row]));
    assert.equal(byEvent.get(dispatched!.id).id, stranded!.id);
    assert.equal(byEvent.get(dispatched!.id).attempts, 2);
    assert.equal(byEvent.get(undispatched!.id).attempts, 1);
    const received = receiver.received.filter((r) => r.path === '/ok-stranded');
    assert.deepEqual(
      received.map((r) => r.headers['webhook-id']).sort(),
      [`msg_${dispatched!.id}`, `msg_${undispatched!.id}`].sort(),
    );
  });

  it('deletes dispatched events past EVENTS_RETENTION_DAYS with their deliveries, never one still pending', async () => {
    const user = await signUp(server);
    const { endpoint } = await createEndpoint(server, user, receiver.url('/ok-retention'), ['QUOTA_THRESHOLD']);
    const [delivered, recent] = await emitEvents(server, [
      { type: EventType.QUOTA_THRESHOLD, accountId: user.id, data: { percent: 80 } },
      { type: EventType.QUOTA_THRESHOLD, accountId: user.id, data: { percent: 100 } },
    ]);
    await until(async () => {
      const rows = await deliveriesOf(server, user, endpoint.id, 'SUCCEEDED');
      return rows.length === 2 ? rows : undefined;
    });
    // An event with a delivery still to be attempted (tomorrow), and one not dispatched yet.
    const [pending] = await emitEvents(server, [{ type: EventType.ALIAS_MOVED, accountId: user.id, data: {} }]);
    await until(async () => {
      const { rows } = await server.sql.query('SELECT dispatched_at FROM events WHERE id = $1', [pending]);
      return rows[0].dispatched_at ? true : undefined;
    });
    await server.sql.query(
      `INSERT INTO webhook_deliveries (event_id, account_id, endpoint_id, url, next_attempt_at)
       VALUES ($1, $2, $3, $4, now() + interval '1 day')`,
      [pending, user.id, endpoint.id, endpoint.url],
    );
    const {
      rows: [undispatched],
    } = await server.sql.query<{ id: string }>(
      `INSERT INTO events (type, account_id, data) VALUES ('alias.moved', $1, '{}') RETURNING id`,
      [user.id],
    );
    // Its dispatch job is due tomorrow (so it is not stranded either).
    await server.app.services.jobs.send(
      'event-dispatch',
      { eventId: undispatched!.id },
      { startAfter: new Date(Date.now() + 86_400_000) },
    );
    const old = [delivered, pending, undispatched!.id];
    await server.sql.query(`UPDATE events SET created_at = now() - interval '31 days' WHERE id = ANY($1)`, [old]);

    await until(async () => {
      const { rows } = await server.sql.query('SELECT 1 FROM events WHERE id = $1', [delivered]);
      return rows.length === 0 ? true : undefined;
    });
    const { rows: left } = await server.sql.query<{ id: string }>(
      'SELECT id FROM events WHERE account_id = $1 ORDER BY created_at',
      [user.id],
    );
    assert.deepEqual(left.map((row) => row.id).sort(), [pending, undispatched!.id, recent].sort());
    const { rows: deliveries } = await server.sql.query<{ event_id: string; attempts: number }>(
      `SELECT d.event_id, (SELECT count(*)::int FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id) AS attempts
       FROM webhook_deliveries d WHERE d.endpoint_id = $1`,
      [endpoint.id],
    );
    assert.deepEqual(
      deliveries.map((row) => [row.event_id, row.attempts]).sort(),
      [
        [pending, 0],
        [recent, 1],
      ].sort(),
    );
    const { rows: orphanAttempts } = await server.sql.query(
      `SELECT 1 FROM webhook_delivery_attempts a LEFT JOIN webhook_deliveries d ON d.id = a.delivery_id
       WHERE d.id IS NULL`,
    );
    assert.equal(orphanAttempts.length, 0);
  });
});
