// Events from contracts and quotas, over real HTTP on a real database: each is written in its change's transaction
// (a refused change writes none), contract.expiring and quota.threshold fire once, the SQL that triggers emit with
// writes the same dispatch job as JobQueue.send, admins see jobs (attempts, last error) and accounts their own events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EVENT_DISPATCH_JOB } from '../../src/events/outbox.js';
import { CONTRACT_EXPIRING_JOB } from '../../src/licensing/contract-expiry.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan, transition } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

const ADMIN = { email: 'admin@events.test', password: 'events admin phrase' };
const EVENTS = `query E($filter: EventFilter, $first: Int, $after: String) { events(filter: $filter, first: $first, after: $after) {
  edges { cursor node { id type data createdAt } } pageInfo { hasNextPage endCursor } } }`;
const JOBS = `query J($filter: JobFilter, $first: Int, $after: String) { jobs(filter: $filter, first: $first, after: $after) {
  edges { node { id name state attempts retryLimit createdAt startedAt completedAt startAfter lastError ids } }
  pageInfo { hasNextPage endCursor } } }`;

interface EventNode {
  id: string;
  type: string;
  data: Record<string, any>;
  createdAt: string;
}

describe('events of contracts and quotas, jobs and events queries', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;

  before(async () => {
    server = await startTestServer({
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      JOBS_POLLING_INTERVAL_SECONDS: '1',
      JOBS_MAINTENANCE_INTERVAL_SECONDS: '1',
    });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token })).model.slug;
  });
  after(() => server.close());

  const eventsOf = async (user: SignedUpUser, filter: Record<string, unknown> = {}): Promise<EventNode[]> => {
    const res = await server.gql(EVENTS, { filter, first: 100 }, { token: user.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.events.edges.map((edge: { node: EventNode }) => edge.node);
  };
  const contractEvents = async (user: SignedUpUser, contractId: string) =>
    (await eventsOf(user)).filter((event) => event.data.contractId === contractId).map((event) => event.type);

  it('writes each contract transition’s event with it, to the right account, and none for a refused one', async () => {
    const consumer = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { requiresApproval: true });
    const pending = await accept(server, { token: consumer.token }, plan.id);
    assert.equal(pending.status, 'PENDING');

    const [requested] = (await eventsOf(owner)).filter((e) => e.data.contractId === pending.id);
    assert.equal(requested?.type, 'contract.requested');
    assert.deepEqual(requested.data, {
      contractId: pending.id,
      modelId: requested.data.modelId,
      planId: plan.id,
      consumerId: consumer.id,
      status: 'PENDING',
    });
    assert.deepEqual(await contractEvents(consumer, pending.id), []);

    const approved = await transition(server, { token: owner.token }, 'approveContract', pending.id);
    assert.equal(approved.errors, undefined, JSON.stringify(approved.errors));
    // Refused: approving twice, and a stranger suspending, change nothing and tell no one.
    expectError(await transition(server, { token: owner.token }, 'approveContract', pending.id), 'BAD_USER_INPUT');
    expectError(
      await transition(server, { token: consumer.token }, 'suspendContract', pending.id, 'not mine'),
      'FORBIDDEN',
    );
    for (const [mutation, reason] of [
      ['suspendContract', 'unpaid invoice'],
      ['resumeContract', undefined],
      ['revokeContract', 'terms breached'],
    ] as const) {
      const res = await transition(server, { token: owner.token }, mutation, pending.id, reason);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
    const told = (await eventsOf(consumer)).filter((e) => e.data.contractId === pending.id).reverse();
    assert.deepEqual(
      told.map((e) => [e.type, e.data.status, e.data.reason]),
      [
        ['contract.approved', 'ACTIVE', null],
        ['contract.suspended', 'SUSPENDED', 'unpaid invoice'],
        ['contract.revoked', 'REVOKED', 'terms breached'],
      ],
    );
    assert.deepEqual(await contractEvents(owner, pending.id), ['contract.requested']);

    const second = await signUp(server);
    const rejectedPlan = await createPlan(server, { token: owner.token }, slug, { requiresApproval: true });
    const toReject = await accept(server, { token: second.token }, rejectedPlan.id);
    const rejected = await transition(server, { token: owner.token }, 'rejectContract', toReject.id, 'not a fit');
    assert.equal(rejected.errors, undefined, JSON.stringify(rejected.errors));
    assert.deepEqual(await contractEvents(second, toReject.id), ['contract.rejected']);

    // Each event's dispatch job ran (the outbox's job exists with its event).
    await until(async () => {
      const { rows } = await server.sql.query(
        'SELECT count(*)::int AS n FROM events WHERE data->>$1 = ANY($2) AND dispatched_at IS NULL',
        ['contractId', [pending.id, toReject.id]],
      );
      return rows[0].n === 0 ? true : undefined;
    });
  });

  it('tells of an expiry 7 days ahead, once (at once when the contract is shorter than that)', async () => {
    const consumer = await signUp(server);
    const short = await createPlan(server, { token: owner.token }, slug, { durationDays: 1 });
    const contract = await accept(server, { token: consumer.token }, short.id);
    const expiring = await until(async () => (await eventsOf(consumer, { type: 'contract.expiring' }))[0]);
    const { rows } = await server.sql.query<{ expires_at: Date }>('SELECT expires_at FROM contracts WHERE id = $1', [
      contract.id,
    ]);
    assert.deepEqual(expiring.data, {
      contractId: contract.id,
      modelId: expiring.data.modelId,
      planId: short.id,
      status: 'ACTIVE',
      expiresAt: rows[0]!.expires_at.toISOString(),
    });

    // The same notice again (a retried or duplicated job) emits nothing more.
    const jobs = server.app.services.jobs;
    const duplicate = await jobs.send(CONTRACT_EXPIRING_JOB.name, {
      contractId: contract.id,
      expiresAt: rows[0]!.expires_at.toISOString(),
    });
    jobs.wake(CONTRACT_EXPIRING_JOB.name);
    await until(async () => {
      const [job] = (await jobs.list({ name: CONTRACT_EXPIRING_JOB.name, limit: 50 })).filter(
        (j) => j.id === duplicate,
      );
      return job?.state === 'completed' ? job : undefined;
    });
    assert.equal((await eventsOf(consumer, { type: 'contract.expiring' })).length, 1);

    // A longer contract's notice waits until 7 days before its expiry.
    const long = await createPlan(server, { token: owner.token }, slug, { durationDays: 30 });
    const later = await accept(server, { token: consumer.token }, long.id);
    const { rows: scheduled } = await server.sql.query<{ start_after: Date; expires_at: Date; state: string }>(
      `SELECT j.start_after, c.expires_at, j.state FROM pgboss.job j JOIN contracts c ON c.id = (j.data->>'contractId')::uuid
       WHERE j.name = $1 AND c.id = $2`,
      [CONTRACT_EXPIRING_JOB.name, later.id],
    );
    assert.equal(scheduled.length, 1);
    assert.equal(scheduled[0]!.state, 'created');
    assert.equal(scheduled[0]!.start_after.getTime(), scheduled[0]!.expires_at.getTime() - 7 * 86_400_000);

    // Its notice, run early for a contract revoked since, tells no one: the job checks the contract is still live.
    const revoked = await transition(server, { token: owner.token }, 'revokeContract', later.id, 'ended early');
    assert.equal(revoked.errors, undefined, JSON.stringify(revoked.errors));
    const early = await jobs.send(CONTRACT_EXPIRING_JOB.name, {
      contractId: later.id,
      expiresAt: scheduled[0]!.expires_at.toISOString(),
    });
    jobs.wake(CONTRACT_EXPIRING_JOB.name);
    await until(async () => {
      const [job] = (await jobs.list({ name: CONTRACT_EXPIRING_JOB.name, limit: 50 })).filter((j) => j.id === early);
      return job?.state === 'completed' ? job : undefined;
    });
    assert.deepEqual(
      (await eventsOf(consumer, { type: 'contract.expiring' })).map((e) => e.data.contractId),
      [contract.id],
    );
  });

  it('tells a due expiry whose notice job is missing at the licensing sweep, once', async () => {
    const consumer = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { durationDays: 30 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    // As a contract activated before notices existed: no job, and its expiry now within 7 days.
    await server.sql.query(`DELETE FROM pgboss.job WHERE name = $1 AND data->>'contractId' = $2`, [
      CONTRACT_EXPIRING_JOB.name,
      contract.id,
    ]);
    const { rows } = await server.sql.query<{ expires_at: Date }>(
      `UPDATE contracts SET expires_at = now() + interval '3 days' WHERE id = $1 RETURNING expires_at`,
      [contract.id],
    );
    const sweep = server.app.services.licensingSweep;
    await sweep.run();
    await sweep.run();
    const told = await eventsOf(consumer, { type: 'contract.expiring' });
    assert.deepEqual(
      told.map((e) => [e.data.contractId, e.data.expiresAt]),
      [[contract.id, rows[0]!.expires_at.toISOString()]],
    );
  });

  it('fires quota.threshold once at 80% and once at 100% per period, under concurrent calls', async () => {
    const consumer = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 10 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const rows = randomRows(1, 784, 3);
    const predict = () => server.gql(PREDICT, { input: { model: slug, inputs: rows } }, { token: consumer.token });
    const thresholds = async () =>
      (await eventsOf(consumer, { type: 'quota.threshold' }))
        .filter((e) => e.data.contractId === contract.id)
        .map((e) => [e.data.threshold, e.data.used, e.data.quota])
        .reverse();

    const answers = await Promise.all(Array.from({ length: 14 }, predict));
    assert.equal(answers.filter((res) => !res.errors).length, 10);
    for (const res of answers.filter((r) => r.errors)) expectError(res, 'QUOTA_EXCEEDED');
    assert.deepEqual(await thresholds(), [
      [80, 8, 10],
      [100, 10, 10],
    ]);

    // Units given back (a failed call's) lower usage below both thresholds; reaching them again tells no one.
    await server.sql.query(
      'SELECT mm_give_back_units(ARRAY[id], ARRAY[period_start], ARRAY[3]) FROM contracts WHERE id = $1',
      [contract.id],
    );
    for (let i = 0; i < 3; i++) assert.equal((await predict()).errors, undefined);
    assert.equal((await thresholds()).length, 2);

    // A new month (the counter rolls over in mm_reserve_predictions) arms both again.
    await server.sql.query(
      `UPDATE contracts SET period_start = date_trunc('month', now(), 'UTC') - interval '1 month' WHERE id = $1`,
      [contract.id],
    );
    for (let i = 0; i < 8; i++) assert.equal((await predict()).errors, undefined);
    const all = await thresholds();
    assert.deepEqual(all.slice(2), [[80, 8, 10]]);
  });

  it('fires quota.threshold 100% once when a call is refused for quota short of it', async () => {
    const consumer = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 10 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const predict = (n: number) =>
      server.gql(PREDICT, { input: { model: slug, inputs: randomRows(n, 784, 4) } }, { token: consumer.token });
    assert.equal((await predict(9)).errors, undefined);
    // 9 of 10 used: a call of 2 does not fit, and the counter never reaches 100%.
    expectError(await predict(2), 'QUOTA_EXCEEDED');
    expectError(await predict(3), 'QUOTA_EXCEEDED');
    const told = (await eventsOf(consumer, { type: 'quota.threshold' }))
      .filter((e) => e.data.contractId === contract.id)
      .reverse();
    assert.deepEqual(
      told.map((e) => [e.data.threshold, e.data.used, e.data.quota]),
      [
        [80, 9, 10],
        [100, 9, 10],
      ],
    );
    const { rows } = await server.sql.query('SELECT model_id, period_start FROM contracts WHERE id = $1', [
      contract.id,
    ]);
    assert.equal(told[1]!.data.modelId, rows[0].model_id, 'a PUBLIC model is named');
    assert.equal(told[1]!.data.planId, plan.id);
    assert.equal(Date.parse(told[1]!.data.periodStart), rows[0].period_start.getTime());
  });

  it("names a model's ids in quota.threshold only while the model is PUBLIC", async () => {
    const consumer = await signUp(server);
    const { model } = await publishedMlp(server, { token: owner.token });
    const plan = await createPlan(server, { token: owner.token }, model.slug, { predictionQuota: 10 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const crossAt = async (visibility: string, used: number) => {
      await server.sql.query('UPDATE models SET visibility = $2 WHERE id = $1', [model.id, visibility]);
      await server.sql.query('UPDATE contracts SET predictions_used = $2 WHERE id = $1', [contract.id, used]);
    };
    await crossAt('PRIVATE', 8);
    await crossAt('PUBLIC', 10);
    const told = (await eventsOf(consumer, { type: 'quota.threshold' })).map((e) => e.data).reverse();
    assert.deepEqual(
      told.map((d) => [d.contractId, d.threshold, d.modelId, d.planId]),
      [
        [contract.id, 80, undefined, undefined],
        [contract.id, 100, model.id, plan.id],
      ],
    );
  });

  it('mm_emit_event writes the dispatch job JobQueue.send writes', async () => {
    const client = await server.sql.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(
        `SELECT mm_emit_event('quota.threshold', $1, '{}'::jsonb) AS id`,
        [owner.id],
      );
      const eventId = rows[0]!.id;
      const sentId = await server.app.services.jobs.send(EVENT_DISPATCH_JOB.name, { eventId }, { client });
      const { rows: jobs } = await client.query(
        `SELECT id = $2 AS sent, name, priority, data, state, retry_limit, retry_count, retry_delay, retry_backoff,
                expire_in, keep_until - start_after AS kept_for, start_after <= now() AS due, singleton_key,
                singleton_on, dead_letter, policy
         FROM pgboss.job WHERE data->>'eventId' = $1 ORDER BY sent`,
        [eventId, sentId],
      );
      assert.equal(jobs.length, 2);
      const [emitted, sent] = jobs.map(({ sent: _sent, ...job }) => job);
      assert.deepEqual(emitted, sent);
      assert.equal(emitted.retry_limit, EVENT_DISPATCH_JOB.retryLimit);
      assert.equal(emitted.due, true);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('shows admins a failed job’s attempts and last error, and no one else', async () => {
    const kind = {
      name: 'test-always-fails',
      retryLimit: 1,
      retryDelaySeconds: 1,
      retryBackoff: false,
      expireInSeconds: 30,
    };
    const jobs = server.app.services.jobs;
    await jobs.define(kind);
    await jobs.work<{ subjectId: string; note: string }>(kind.name, 1, async (_data, { retryCount }) => {
      throw new Error(`attempt ${retryCount + 1} failed`);
    });
    const subjectId = owner.id;
    const id = await jobs.send(kind.name, { subjectId, note: 'not an id' });
    await jobs.send(kind.name, { subjectId, note: 'second' });
    await until(async () => {
      const [job] = (await jobs.list({ name: kind.name, limit: 10 })).filter((j) => j.id === id);
      return job?.state === 'failed' ? job : undefined;
    });

    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const res = await server.gql(JOBS, { filter: { name: kind.name, state: 'FAILED' } }, { token: admin.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const failed = res.data!.jobs.edges.map((edge: any) => edge.node).find((job: any) => job.id === id);
    assert.deepEqual(
      { ...failed, createdAt: undefined, startedAt: undefined, completedAt: undefined, startAfter: undefined },
      {
        id,
        name: kind.name,
        state: 'FAILED',
        attempts: 2,
        retryLimit: 1,
        lastError: 'attempt 2 failed',
        ids: { subjectId },
        createdAt: undefined,
        startedAt: undefined,
        completedAt: undefined,
        startAfter: undefined,
      },
    );

    // Pages follow each other without overlap.
    const first = await server.gql(JOBS, { filter: { name: kind.name }, first: 1 }, { token: admin.token });
    const next = await server.gql(
      JOBS,
      { filter: { name: kind.name }, first: 1, after: first.data!.jobs.pageInfo.endCursor },
      { token: admin.token },
    );
    assert.equal(first.data!.jobs.pageInfo.hasNextPage, true);
    assert.notEqual(first.data!.jobs.edges[0].node.id, next.data!.jobs.edges[0].node.id);
    expectError(await server.gql(JOBS, { after: 'bm90IGEgY3Vyc29y' }, { token: admin.token }), 'BAD_USER_INPUT');
    expectError(await server.gql(JOBS, { first: 1000 }, { token: admin.token }), 'BAD_USER_INPUT');
    const beyondBigint = Buffer.from(JSON.stringify({ createdAt: '9'.repeat(20), id })).toString('base64url');
    expectError(await server.gql(JOBS, { after: beyondBigint }, { token: admin.token }), 'BAD_USER_INPUT');

    expectError(await server.gql(JOBS, {}, { token: owner.token }), 'FORBIDDEN');
    expectError(await server.gql(JOBS, {}), 'UNAUTHENTICATED');
  });

  it('lists only the caller’s own events, by type and time, a page at a time', async () => {
    const consumer = await signUp(server);
    const other = await signUp(server);
    for (const user of [consumer, other]) {
      const plan = await createPlan(server, { token: owner.token }, slug, { requiresApproval: true });
      const contract = await accept(server, { token: user.token }, plan.id);
      await transition(server, { token: owner.token }, 'rejectContract', contract.id, `no ${user.email}`);
      await transition(server, { token: owner.token }, 'revokeContract', contract.id, 'again');
    }
    const mine = await eventsOf(consumer);
    assert.deepEqual(
      mine.map((e) => [e.type, e.data.reason]),
      [['contract.rejected', `no ${consumer.email}`]],
    );
    assert.equal((await eventsOf(consumer, { type: 'contract.approved' })).length, 0);
    assert.equal((await eventsOf(consumer, { since: new Date(Date.now() + 60_000).toISOString() })).length, 0);

    const page = await server.gql(EVENTS, { first: 1 }, { token: owner.token });
    const rest = await server.gql(
      EVENTS,
      { first: 1, after: page.data!.events.pageInfo.endCursor },
      { token: owner.token },
    );
    assert.equal(page.data!.events.pageInfo.hasNextPage, true);
    assert.ok(
      new Date(rest.data!.events.edges[0].node.createdAt) <= new Date(page.data!.events.edges[0].node.createdAt),
    );
    assert.notEqual(rest.data!.events.edges[0].node.id, page.data!.events.edges[0].node.id);

    // Another account's: admins only, and audited.
    expectError(await server.gql(EVENTS, { filter: { account: other.id } }, { token: consumer.token }), 'FORBIDDEN');
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const read = await server.gql(EVENTS, { filter: { account: consumer.id } }, { token: admin.token });
    assert.deepEqual(
      read.data!.events.edges.map((edge: { node: EventNode }) => edge.node.id),
      mine.map((e) => e.id),
    );
    const audited = await server.sql.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'admin.read' AND target_id = $1 AND actor_id = $2`,
      [consumer.id, admin.id],
    );
    assert.equal(audited.rows[0].n, 1);
    expectError(await server.gql(EVENTS, { filter: { account: 'nope' } }, { token: admin.token }), 'BAD_USER_INPUT');
    expectError(await server.gql(EVENTS, { filter: { type: 'no.such' } }, { token: consumer.token }), 'BAD_USER_INPUT');
    expectError(await server.gql(EVENTS, {}), 'UNAUTHENTICATED');
  });
});
