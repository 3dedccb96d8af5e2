// The job queue and the outbox on a real database: a job sent in a transaction exists only if it commits (node-pg
// and Prisma transactions alike), a failing job is retried, a job whose process died is retried after its timeout,
// and an event's dispatch reaches the subscribers once per successful dispatch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDatabase, type Database } from '../../src/db/database.js';
import { EventOutbox, EventType, type StoredEvent } from '../../src/events/outbox.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { createLogger } from '../../src/server/logger.js';
import { createTestDatabase } from '../support/server.js';
import { until } from '../support/until.js';

const logger = createLogger('silent');

describe('job queue (pg-boss) and outbox', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let queue: JobQueue;

  before(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, 5, { connectMs: 5000, statementMs: 30_000, idleInTransactionMs: 30_000 });
    queue = await JobQueue.start(db.pool, logger, { pollingIntervalSeconds: 1, maintenanceIntervalSeconds: 1 });
  });
  after(async () => {
    await queue.stop(1000);
    await db.close();
    await database.drop();
  });

  it('sends in a transaction: committed jobs run, rolled-back ones never exist (node-pg and Prisma)', async () => {
    const kind = { name: 'test-tx', retryLimit: 0, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 30 };
    await queue.define(kind);
    const seen: string[] = [];
    await queue.work<{ tag: string }>(kind.name, 1, async ({ tag }) => void seen.push(tag));

    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await queue.send(kind.name, { tag: 'pg-rolled-back' }, { client });
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await queue.send(kind.name, { tag: 'pg-committed' }, { client });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await db.prisma
      .$transaction(async (tx) => {
        await queue.send(kind.name, { tag: 'prisma-rolled-back' }, { client: tx });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    await db.prisma.$transaction(async (tx) => {
      await queue.send(kind.name, { tag: 'prisma-committed' }, { client: tx, startAfter: new Date() });
    });
    queue.wake(kind.name);
    await until(async () => (seen.length >= 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(seen.sort(), ['pg-committed', 'prisma-committed']);
    const jobs = await queue.list({ name: kind.name, limit: 10 });
    assert.deepEqual(
      jobs.map((job) => job.state),
      ['completed', 'completed'],
    );
  });

  it('retries a failing job, recording its last error, until it succeeds', async () => {
    const kind = { name: 'test-retry', retryLimit: 3, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 30 };
    await queue.define(kind);
    let attempts = 0;
    await queue.work(kind.name, 1, async (_data, job) => {
      attempts++;
      if (job.retryCount < 2) throw new Error(`attempt ${job.retryCount} failed`);
    });
    const id = await queue.send(kind.name, {});
    const done = await until(async () => {
      const [job] = (await queue.list({ name: kind.name, limit: 1 })).filter((j) => j.id === id);
      return job?.state === 'completed' ? job : undefined;
    });
    assert.equal(attempts, 3);
    assert.equal(done.retryCount, 2);
  });

  it('retries a job whose process died (left active) once its timeout passes', async () => {
    const kind = { name: 'test-expire', retryLimit: 2, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 1 };
    await queue.define(kind);
    const id = await queue.send(kind.name, {});
    // A process that took the job and died: active, started, never finished.
    await db.pool.query(`UPDATE pgboss.job SET state = 'active', started_on = now() WHERE id = $1`, [id]);
    let ran = 0;
    await queue.work(kind.name, 1, async () => void ran++);
    await until(async () => (ran > 0 ? true : undefined));
    const [job] = (await queue.list({ name: kind.name, limit: 5 })).filter((j) => j.id === id);
    assert.equal(job!.retryCount, 1);
  });

  it('dispatches an event written in a committed transaction, and none from a rolled-back one', async () => {
    const outbox = new EventOutbox(db.pool, queue);
    const dispatched: StoredEvent[] = [];
    let failOnce = true;
    outbox.subscribe(async (event) => {
      if (failOnce) {
        failOnce = false;
        throw new Error('subscriber down');
      }
      dispatched.push(event);
    });
    await outbox.start(1);
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO users (id, email, display_name, role, password_hash, updated_at)
       VALUES (gen_random_uuid(), 'outbox@example.com', 'Outbox', 'CONSUMER', 'x', now()) RETURNING id`,
    );
    const accountId = rows[0]!.id;
    await db.prisma
      .$transaction(async (tx) => {
        await outbox.emit(tx, [{ type: EventType.VERSION_PUBLISHED, accountId, data: { n: 0 } }]);
        throw new Error('roll back');
      })
      .catch(() => undefined);
    const [id] = await db.prisma.$transaction((tx) =>
      outbox.emit(tx, [{ type: EventType.VERSION_PUBLISHED, accountId, data: { n: 1 } }]),
    );
    outbox.wake();
    await until(async () => (dispatched.length > 0 ? true : undefined));
    assert.equal(dispatched.length, 1);
    assert.equal(dispatched[0]!.id, id);
    assert.deepEqual(dispatched[0]!.data, { n: 1 });
    const stored = await db.pool.query('SELECT dispatched_at FROM events');
    assert.equal(stored.rowCount, 1);
    assert.ok(stored.rows[0].dispatched_at);
  });
});
