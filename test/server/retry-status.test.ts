// A 503 (or 429) with Retry-After invites the client to send the whole request again: it is answered only when
// nothing in the request ran. A request where one predict was answered and billed while another got
// SERVICE_UNAVAILABLE — two aliased fields, or two operations of a batch — stays 200, each error carrying its
// own retryAfter, so that no retry bills the answered call twice.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const PAIR = `mutation Pair($a: PredictInput!, $b: PredictInput!) {
  a: predict(input: $a) { id } b: predict(input: $b) { id } }`;

interface Answer {
  status: number;
  retryAfter: string | null;
  body: any;
}

describe('the HTTP status of a request where some calls ran and others were unavailable', () => {
  let server: TestServer;
  let consumer: SignedUpUser;
  const contracts: Record<'served' | 'locked', string> = { served: '', locked: '' };
  const inputs: Record<'served' | 'locked', Record<string, unknown>> = { served: {}, locked: {} };
  let blocker: pg.Client;

  before(async () => {
    // A statement waiting for the locked contract fails (57014: SERVICE_UNAVAILABLE) after 1 s.
    server = await startTestServer({ DATABASE_STATEMENT_TIMEOUT_MS: '1000', LEASE_SWEEP_INTERVAL_MS: '3600000' });
    const owner = await signUp(server, { role: 'OWNER' });
    consumer = await signUp(server);
    for (const which of ['served', 'locked'] as const) {
      const { slug } = (await publishedMlp(server, { token: owner.token })).model;
      const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 10 });
      contracts[which] = (await accept(server, { token: consumer.token }, plan.id)).id;
      inputs[which] = { model: slug, inputs: randomRows(1, 784, 1) };
    }
    // Reserving quota on the locked contract waits for this transaction.
    blocker = new pg.Client({ connectionString: server.databaseUrl });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM contracts WHERE id = $1 FOR UPDATE', [contracts.locked]);
  });
  after(async () => {
    await blocker.query('ROLLBACK');
    await blocker.end();
    await assertLedgerHolds(server.sql);
    await server.close();
  });

  async function post(body: unknown): Promise<Answer> {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${consumer.token}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.json() };
  }

  async function billed(contractId: string): Promise<number> {
    const { rows } = await server.sql.query<{ billed: number }>(
      'SELECT coalesce(sum(billable_units), 0)::int AS billed FROM usage_records WHERE contract_id = $1',
      [contractId],
    );
    return rows[0]!.billed;
  }

  it('answers 503 with Retry-After when the only call was unavailable (nothing ran)', async () => {
    const answer = await post({ query: PREDICT, variables: { input: inputs.locked } });
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.equal(answer.body.errors[0].extensions.code, 'SERVICE_UNAVAILABLE');
    assert.equal(answer.retryAfter, String(answer.body.errors[0].extensions.retryAfter));
  });

  it('answers 200 without Retry-After, with its answer, when an aliased call ran and was billed', async () => {
    const before = await billed(contracts.served);
    const answer = await post({ query: PAIR, variables: { a: inputs.served, b: inputs.locked } });
    assert.equal(await billed(contracts.served), before + 1, 'the first call ran and was billed');
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.retryAfter, null);
    assert.deepEqual(
      answer.body.errors.map((error: any) => ({ path: error.path, code: error.extensions.code })),
      [{ path: ['b'], code: 'SERVICE_UNAVAILABLE' }],
    );
    assert.equal(typeof answer.body.errors[0].extensions.retryAfter, 'number', 'the error says when to retry it');
    // predict is nullable: the billed call's answer is delivered beside the other's error, not nulled with it.
    assert.match(answer.body.data.a.id, /^[0-9a-f-]{36}$/);
    assert.equal(answer.body.data.b, null);
  });

  it('answers 200 without Retry-After when another operation of a batch ran, in either order', async () => {
    // Not a second predict: calls running together share one reservation statement, which the lock holds up.
    const operations = {
      locked: { query: PREDICT, variables: { input: inputs.locked } },
      served: { query: '{ me { id } }' },
    };
    for (const order of [
      ['served', 'locked'],
      ['locked', 'served'],
    ] as const) {
      const answer = await post(order.map((which) => operations[which]));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.retryAfter, null);
      assert.equal(answer.body[order.indexOf('locked')].errors[0].extensions.code, 'SERVICE_UNAVAILABLE');
      assert.equal(answer.body[order.indexOf('served')].data.me.id, consumer.id);
    }
  });

  it('answers 503 for a batch whose every call was unavailable', async () => {
    const locked = { query: PREDICT, variables: { input: inputs.locked } };
    const answer = await post([locked, locked]);
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.match(answer.retryAfter ?? '', /^\d+$/);
  });
});
