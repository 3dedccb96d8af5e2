// Quota and rate limits hold across server processes sharing one database, under concurrency.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, signUp } from '../support/fixtures.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertLedgerHolds } from '../support/ledger.js';

async function call(url: string, apiKey: string, input: Record<string, unknown>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
    body: JSON.stringify({ query: PREDICT, variables: { input } }),
  });
  const body = (await response.json()) as { data?: unknown; errors?: { extensions: { code: string } }[] };
  return body.errors?.[0]?.extensions.code ?? 'OK';
}

const tally = (codes: string[]) =>
  codes.reduce<Record<string, number>>((acc, code) => ({ ...acc, [code]: (acc[code] ?? 0) + 1 }), {});

describe('metering across two server processes on one database', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dirs: string[];
  let servers: ServerProcess[];
  let sql: pg.Pool;
  // Set-up (owner, model, plans, contracts) goes through a third, in-process server on the same database.
  let setup: TestServer;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let slug: string;

  before(async () => {
    database = await createTestDatabase();
    const APP_SECRET = randomBytes(32).toString('hex');
    setup = await startTestServer({ DATABASE_URL: database.url, APP_SECRET });
    owner = await signUp(setup, { role: 'OWNER' });
    slug = (await publishedMlp(setup, { token: owner.token })).model.slug;
    dirs = await Promise.all([0, 1].map(() => mkdtemp(path.join(os.tmpdir(), 'modelmarket-proc-'))));
    servers = [];
    for (const dir of dirs)
      servers.push(
        await startServerProcess({
          DATABASE_URL: database.url,
          DATA_DIR: dir,
          APP_SECRET,
          PASSWORD_SCRYPT_LOG2N: '12',
          INFERENCE_WORKERS: '1',
        }),
      );
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
  });

  after(async () => {
    for (const { child } of servers) await stopServerProcess(child);
    await setup.stopKeepingDatabase();
    await sql.end();
    await database.drop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  afterEach(() => assertLedgerHolds(sql));

  async function licensedKey(plan: Record<string, unknown>): Promise<{ apiKey: string; contractId: string }> {
    const created = await createPlan(setup, { token: owner.token }, slug, plan);
    const consumer = await signUp(setup);
    const contract = await accept(setup, { token: consumer.token }, created.id);
    const key = await createApiKey(setup, consumer.token, ['PREDICT']);
    return { apiKey: key.secret, contractId: contract.id };
  }

  it('never exceeds a quota: 400 concurrent calls against quota 100 → exactly 100 served', async () => {
    const { apiKey, contractId } = await licensedKey({ predictionQuota: 100, period: 'TOTAL' });
    const rows = randomRows(1, 784, 3);
    const codes = await Promise.all(
      Array.from({ length: 400 }, (_, i) => call(servers[i % 2]!.url, apiKey, { model: slug, inputs: rows })),
    );
    assert.deepEqual(tally(codes), { OK: 100, QUOTA_EXCEEDED: 300 });
    const contract = await sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contractId]);
    assert.equal(contract.rows[0].predictions_used, 100);
    const usage = await sql.query(
      `SELECT count(*) FILTER (WHERE billable_units > 0)::int AS billable, coalesce(sum(billable_units), 0)::int AS units, count(*)::int AS records
       FROM usage_records WHERE contract_id = $1`,
      [contractId],
    );
    assert.deepEqual(usage.rows[0], { billable: 100, units: 100, records: 400 });
  });

  it('holds a per-minute rate limit across both processes', async () => {
    const { apiKey, contractId } = await licensedKey({ rateLimitPerMinute: 10, predictionQuota: 1000 });
    const rows = randomRows(1, 784, 4);
    const codes = await Promise.all(
      Array.from({ length: 30 }, (_, i) => call(servers[i % 2]!.url, apiKey, { model: slug, inputs: rows })),
    );
    assert.deepEqual(tally(codes), { OK: 10, RATE_LIMITED: 20 });
    const contract = await sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contractId]);
    assert.equal(contract.rows[0].predictions_used, 10);
  });

  it('counts a requestId once across processes', async () => {
    const { apiKey, contractId } = await licensedKey({ predictionQuota: 1000 });
    const rows = randomRows(2, 784, 5);
    const codes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        call(servers[i % 2]!.url, apiKey, { model: slug, inputs: rows, requestId: 'same-everywhere' }),
      ),
    );
    assert.deepEqual(tally(codes), { OK: 20 });
    const usage = await sql.query(
      'SELECT count(*)::int AS n, sum(billable_units)::int AS units FROM usage_records WHERE contract_id = $1',
      [contractId],
    );
    assert.deepEqual(usage.rows[0], { n: 1, units: 2 });
  });
});

describe('metering: failed inference', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ INFERENCE_MAX_QUEUE: '8', INFERENCE_MAX_BATCH: '8' });
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  it('releases the reservation of a call the engine refuses, and bills only what was served', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token }, { sizes: [784, 1024, 1024, 10] });
    const plan = await createPlan(server, { token: owner.token }, model.slug, { predictionQuota: 10_000 });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const rows = randomRows(8, 784, 6);
    const results = await Promise.all(
      Array.from({ length: 60 }, () =>
        server.gql(PREDICT, { input: { model: model.slug, inputs: rows } }, { token: consumer.token }),
      ),
    );
    const codes = tally(results.map((r) => String(r.errors?.[0]?.extensions?.code ?? 'OK')));
    assert.ok((codes.OVERLOADED ?? 0) > 0, JSON.stringify(codes));
    const used = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    assert.equal(used.rows[0].predictions_used, 8 * (codes.OK ?? 0));
    const billed = await server.sql.query(
      'SELECT sum(billable_units)::int AS units FROM usage_records WHERE contract_id = $1',
      [contract.id],
    );
    assert.equal(billed.rows[0].units, 8 * (codes.OK ?? 0));
  });
});
