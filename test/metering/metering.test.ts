import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertLedgerHolds } from '../support/ledger.js';

const ADMIN = { email: 'admin@metering.test', password: 'metering admin phrase' };
const USAGE = `query U($f: UsageFilter) { usage(filter: $f) {
  totals { calls predictions billableUnits errors p50LatencyMs p95LatencyMs amounts { amount currency } }
  series { key figures { calls predictions billableUnits amounts { amount currency } } } } }`;
const CONTRACT = 'query { myContracts { id predictionsUsed predictionQuota periodResetsAt } }';

describe('metering: quota, idempotency, usage, statements', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token })).model.slug;
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  const predict = (user: { token: string }, inputs: number[][], extra: Record<string, unknown> = {}) =>
    server.gql(PREDICT, { input: { model: slug, inputs, ...extra } }, { token: user.token });
  const records = async (consumerId: string) =>
    (
      await server.sql.query(
        `SELECT status, units, billable_units, unit_price::text, request_id FROM usage_records WHERE consumer_id = $1 ORDER BY id`,
        [consumerId],
      )
    ).rows;

  it('counts each instance as a unit and refuses past the quota with QUOTA_EXCEEDED and the reset time', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, {
      predictionQuota: 5,
      pricePerPrediction: '0.25',
    });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    assert.equal((await predict(consumer, randomRows(3, 784, 1))).errors, undefined);
    const over = expectError(await predict(consumer, randomRows(3, 784, 2)), 'QUOTA_EXCEEDED');
    assert.equal(over.extensions!.used, 3);
    assert.equal(over.extensions!.quota, 5);
    const now = new Date();
    assert.equal(
      over.extensions!.resetsAt,
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString(),
    );
    assert.equal((await predict(consumer, randomRows(2, 784, 3))).errors, undefined);
    const contract = (await server.gql(CONTRACT, {}, { token: consumer.token })).data!.myContracts[0];
    assert.equal(contract.predictionsUsed, 5);
    assert.deepEqual(
      (await records(consumer.id)).map((r) => [r.status, r.units, r.billable_units, r.unit_price]),
      [
        ['OK', 3, 3, '0.2500000000'],
        ['QUOTA_EXCEEDED', 3, 0, '0.2500000000'],
        ['OK', 2, 2, '0.2500000000'],
      ],
    );
  });

  it('starts a monthly quota again with the new month, without a job', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 2 });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    assert.equal((await predict(consumer, randomRows(2, 784, 1))).errors, undefined);
    expectError(await predict(consumer, randomRows(1, 784, 1)), 'QUOTA_EXCEEDED');
    // As if those two predictions had been made last month: the contract's period and the period its records
    // were counted in move back together (records are append-only: the trigger is lifted for this transaction).
    const client = await server.sql.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      const lastMonth = `date_trunc('month', now(), 'UTC') - interval '1 month'`;
      await client.query(`UPDATE contracts SET period_start = ${lastMonth} WHERE id = $1`, [contract.id]);
      await client.query(
        `UPDATE usage_records SET quota_period_start = ${lastMonth} WHERE contract_id = $1 AND quota_period_start IS NOT NULL`,
        [contract.id],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.equal((await server.gql(CONTRACT, {}, { token: consumer.token })).data!.myContracts[0].predictionsUsed, 0);
    assert.equal((await predict(consumer, randomRows(2, 784, 1))).errors, undefined);
    expectError(await predict(consumer, randomRows(1, 784, 1)), 'QUOTA_EXCEEDED');
  });

  it('never counts a call that fails: bad input, and inference refused by an overloaded engine', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 100 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    expectError(await predict(consumer, [[1, 2, 3]]), 'BAD_USER_INPUT');
    const contract = () => server.gql(CONTRACT, {}, { token: consumer.token }).then((r) => r.data!.myContracts[0]);
    assert.equal((await contract()).predictionsUsed, 0);
    assert.deepEqual(
      (await records(consumer.id)).map((r) => [r.status, r.billable_units]),
      [['BAD_USER_INPUT', 0]],
    );
  });

  it('answers a retried requestId from the stored result, once recorded, even for 50 concurrent duplicates', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 1000 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    const rows = randomRows(2, 784, 7);
    const results = await Promise.all(
      Array.from({ length: 50 }, () => predict(consumer, rows, { requestId: 'order-42' })),
    );
    for (const res of results) assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const first = JSON.stringify(results[0]!.data);
    for (const res of results) assert.equal(JSON.stringify(res.data), first);
    const again = await predict(consumer, rows, { requestId: 'order-42' });
    assert.equal(JSON.stringify(again.data), first);
    assert.deepEqual(
      (await records(consumer.id)).map((r) => [r.status, r.billable_units, r.request_id]),
      [['OK', 2, 'order-42']],
    );
    const conflict = expectError(await predict(consumer, randomRows(2, 784, 8), { requestId: 'order-42' }), 'CONFLICT');
    assert.match(conflict.message, /different input/);
    const contract = (await server.gql(CONTRACT, {}, { token: consumer.token })).data!.myContracts[0];
    assert.equal(contract.predictionsUsed, 2);
    // Keys are per caller: another consumer may use the same requestId.
    const other = await signUp(server);
    await accept(server, { token: other.token }, plan.id);
    assert.equal((await predict(other, rows, { requestId: 'order-42' })).errors, undefined);
  });

  it("reports usage to each party: consumers their own, owners their models', admins everything", async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { pricePerPrediction: '0.1', currency: 'usd' });
    const alice = await signUp(server);
    const bob = await signUp(server);
    await accept(server, { token: alice.token }, plan.id);
    await accept(server, { token: bob.token }, plan.id);
    await predict(alice, randomRows(3, 784, 1));
    await predict(alice, randomRows(2, 784, 2));
    await predict(bob, randomRows(4, 784, 3));
    expectError(await predict(bob, [[1]]), 'BAD_USER_INPUT');

    const aliceUsage = (await server.gql(USAGE, {}, { token: alice.token })).data!.usage;
    assert.deepEqual(
      { ...aliceUsage.totals, p50LatencyMs: undefined, p95LatencyMs: undefined },
      {
        calls: 2,
        predictions: 5,
        billableUnits: 5,
        errors: 0,
        amounts: [{ amount: '0.5', currency: 'USD' }],
        p50LatencyMs: undefined,
        p95LatencyMs: undefined,
      },
    );
    assert.ok(aliceUsage.totals.p50LatencyMs > 0 && aliceUsage.totals.p95LatencyMs >= aliceUsage.totals.p50LatencyMs);
    // Alice asking for Bob's usage sees nothing of Bob's.
    const snooping = (await server.gql(USAGE, { f: { consumer: bob.id } }, { token: alice.token })).data!.usage;
    assert.equal(snooping.totals.calls, 0);
    const byConsumer = (await server.gql(USAGE, { f: { model: slug, groupBy: 'CONSUMER' } }, { token: owner.token }))
      .data!.usage.series;
    const forBob = byConsumer.find((b: any) => b.key === bob.id);
    assert.deepEqual(forBob.figures, {
      calls: 2,
      predictions: 4,
      billableUnits: 4,
      amounts: [{ amount: '0.4', currency: 'USD' }],
    });
    const stranger = await signUp(server, { role: 'OWNER' });
    assert.equal(
      (await server.gql(USAGE, { f: { model: slug } }, { token: stranger.token })).data!.usage.totals.calls,
      0,
    );
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const all = (await server.gql(USAGE, { f: { consumer: bob.id } }, { token: admin.token })).data!.usage.totals;
    assert.equal(all.calls, 2);
    const key = await createApiKey(server, alice.token, ['READ_USAGE']);
    assert.equal((await server.gql(USAGE, {}, { apiKey: key.secret })).data!.usage.totals.calls, 2);
    const predictOnly = await createApiKey(server, alice.token, ['PREDICT']);
    expectError(await server.gql(USAGE, {}, { apiKey: predictOnly.secret }), 'FORBIDDEN');
  });

  it('exports the same visible records as CSV, and builds monthly statements', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { pricePerPrediction: '0.003' });
    const carol = await signUp(server);
    const contract = await accept(server, { token: carol.token }, plan.id);
    await predict(carol, randomRows(2, 784, 1), { requestId: 'needs,"quoting"' });
    await predict(carol, randomRows(5, 784, 2));
    const csv = await (
      await fetch(`${server.origin}/v1/usage.csv?contract=${contract.id}`, {
        headers: { authorization: `Bearer ${carol.token}` },
      })
    ).text();
    const lines = csv.trim().split('\n');
    assert.equal(
      lines[0],
      'at,prediction_id,request_id,consumer_id,api_key_id,model,version,contract_id,status,units,billable_units,unit_price,amount,currency,latency_ms,kind,quota_units',
    );
    assert.equal(lines.length, 3);
    assert.ok(lines[1]!.includes('"needs,""quoting"""'));
    assert.ok(lines[2]!.includes(`,${slug},1.0.0,${contract.id},OK,5,5,0.0030000000,0.0150000000,EUR,`));
    // Latency to the microsecond, never a float's 16 decimals; then the kind and the quota units taken.
    for (const line of lines.slice(1)) assert.match(line, /,\d+(\.\d{1,3})?,PREDICTION,[25]$/);
    const otherCsv = await (
      await fetch(`${server.origin}/v1/usage.csv?contract=${contract.id}`, {
        headers: { authorization: `Bearer ${(await signUp(server)).token}` },
      })
    ).text();
    assert.equal(otherCsv.trim().split('\n').length, 1);
    assert.equal(
      (
        await fetch(`${server.origin}/v1/usage.csv?from=yesterday`, {
          headers: { authorization: `Bearer ${carol.token}` },
        })
      ).status,
      400,
    );
    assert.equal((await fetch(`${server.origin}/v1/usage.csv`)).status, 401);

    const now = new Date();
    const period = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const STATEMENT =
      'query S($c: ID!, $p: String!) { billingStatement(contractId: $c, period: $p) { period lines { modelVersion kind billableUnits unitPrice amount } totalUnits total { amount currency } } }';
    const statement = (await server.gql(STATEMENT, { c: contract.id, p: period }, { token: carol.token })).data!
      .billingStatement;
    assert.deepEqual(statement, {
      period,
      lines: [{ modelVersion: '1.0.0', kind: 'PREDICTION', billableUnits: 7, unitPrice: '0.003', amount: '0.021' }],
      totalUnits: 7,
      total: { amount: '0.021', currency: 'EUR' },
    });
    expectError(
      await server.gql(STATEMENT, { c: contract.id, p: period }, { token: (await signUp(server)).token }),
      'NOT_FOUND',
    );
    expectError(
      await server.gql(STATEMENT, { c: contract.id, p: '2026-13' }, { token: carol.token }),
      'BAD_USER_INPUT',
    );
  });

  it("keeps usage records append-only for the API's own database role", async () => {
    await assert.rejects(() => server.sql.query(`UPDATE usage_records SET billable_units = 0`), /append-only/);
    await assert.rejects(() => server.sql.query('DELETE FROM usage_records'), /append-only/);
  });
});

describe('metering: rate limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  it('refuses calls past the per-minute limit with RATE_LIMITED and retryAfter, without using quota', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token });
    const plan = await createPlan(server, { token: owner.token }, model.slug, {
      rateLimitPerMinute: 3,
      predictionQuota: 100,
    });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    const call = () =>
      server.gql(PREDICT, { input: { model: model.slug, inputs: randomRows(1, 784, 1) } }, { token: consumer.token });
    for (let i = 0; i < 3; i++) assert.equal((await call()).errors, undefined);
    const response = await call();
    const limited = expectError(response, 'RATE_LIMITED');
    assert.ok(limited.extensions!.retryAfter >= 1 && limited.extensions!.retryAfter <= 60);
    assert.equal(response.status, 429);
    assert.equal(response.headers.get('retry-after'), String(limited.extensions!.retryAfter));
    const used = (await server.gql(CONTRACT, {}, { token: consumer.token })).data!.myContracts[0].predictionsUsed;
    assert.equal(used, 3);
  });
});
