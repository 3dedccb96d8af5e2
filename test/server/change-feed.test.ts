// The change feed and its caches on a real database: what a trigger notifies drops what depends on it, a load
// that overlapped a change is answered but never kept (the generation rule), and nothing is answered from a cache
// while the feed is down; after it listens again the caches start empty.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Change, ChangeFeed } from '../../src/db/change-feed.js';
import { FeedCache } from '../../src/db/feed-cache.js';
import { createTestDatabase } from '../support/server.js';

interface Account {
  id: string;
  role: string;
}

describe('change feed and feed caches', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: pg.Pool;
  let feed: ChangeFeed;
  let accounts: FeedCache<Account>;
  let loads = 0;

  async function newAccount(): Promise<string> {
    const id = randomUUID();
    await pool.query(
      `INSERT INTO users (id, email, display_name, role, password_hash, updated_at)
       VALUES ($1, $2, 'Feed', 'CONSUMER', 'x', now())`,
      [id, `${id}@feed.test`],
    );
    return id;
  }

  async function read(id: string): Promise<Account | undefined> {
    loads += 1;
    const { rows } = await pool.query<Account>('SELECT id, role FROM users WHERE id = $1', [id]);
    return rows[0];
  }

  /** The account through the cache; whether it was read from the database. */
  async function lookUp(id: string): Promise<{ account: Account | undefined; read: boolean }> {
    const before = loads;
    const account = await accounts.getOrLoad(id, () => read(id));
    return { account, read: loads > before };
  }

  /** Returns once this feed heard every change committed before the call. */
  const heardAllSoFar = () => feed.published([]);

  async function until(condition: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!condition()) {
      assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  before(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ connectionString: database.url, max: 3 });
    feed = await ChangeFeed.start(pool, pino({ level: 'silent' }), new Registry());
    accounts = new FeedCache<Account>(feed, {
      max: 3,
      kinds: ['u'],
      dependsOn: (account) => [Change.user(account.id)],
    });
  });

  after(async () => {
    await feed.close();
    await pool.end();
    await database.drop();
  });

  it('keeps what it read until a trigger notifies a change of it, from any connection', async () => {
    const [changed, untouched] = [await newAccount(), await newAccount()];
    assert.equal(feed.trusted, true);
    assert.equal((await lookUp(changed)).read, true);
    assert.equal((await lookUp(changed)).read, false);
    assert.equal((await lookUp(untouched)).read, true);

    await pool.query(`UPDATE users SET role = 'OWNER' WHERE id = $1`, [changed]);
    await heardAllSoFar();
    assert.deepEqual(await lookUp(changed), { account: { id: changed, role: 'OWNER' }, read: true });
    assert.equal((await lookUp(untouched)).read, false);
  });

  it('drops every cache on a TRUNCATE of any table it watches (no rows to name)', async () => {
    const id = await newAccount();
    assert.equal((await lookUp(id)).read, true);
    assert.equal((await lookUp(id)).read, false);
    await pool.query('TRUNCATE model_aliases');
    await heardAllSoFar();
    assert.equal((await lookUp(id)).read, true, 'the TRUNCATE of another table cleared the cache');
  });

  it('answers a load that overlapped a change but does not keep it (the generation rule)', async () => {
    const id = await newAccount();
    const other = await newAccount();
    // The row is read, then changed and the change heard, all before the load returns: what it read is stale.
    const answered = await accounts.load(id, async () => {
      const stale = await read(id);
      await pool.query(`UPDATE users SET role = 'OWNER' WHERE id = $1`, [other]);
      await heardAllSoFar();
      return stale;
    });
    assert.equal(answered?.role, 'CONSUMER');
    assert.equal((await lookUp(id)).read, true, 'the overlapping load was not kept');
    assert.equal((await lookUp(id)).read, false, 'the next load was');

    // A change made by this server counts at once, before any notification.
    const local = await accounts.load(id, async () => {
      const row = await read(id);
      await feed.published([Change.user(id)]);
      return row;
    });
    assert.ok(local);
    assert.equal((await lookUp(id)).read, true);
  });

  it('stays within its bound, forgetting the least recently used', async () => {
    const ids = [await newAccount(), await newAccount(), await newAccount(), await newAccount()];
    for (const id of ids) await lookUp(id);
    assert.equal(accounts.size, 3);
    assert.equal((await lookUp(ids[0]!)).read, true);
    // A change of an evicted entry finds nothing to drop; the others stay.
    await pool.query(`UPDATE users SET role = 'OWNER' WHERE id = $1`, [ids[1]]);
    await heardAllSoFar();
    assert.equal((await lookUp(ids[3]!)).read, false);
  });

  it('answers nothing from the cache while the feed is down, and starts empty once it listens again', async () => {
    const id = await newAccount();
    await lookUp(id);
    assert.equal((await lookUp(id)).read, false);
    const { rowCount } = await pool.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [feed.applicationName],
    );
    assert.equal(rowCount, 1);
    await until(() => !feed.trusted, 'the feed noticed');
    assert.equal(accounts.size, 0);
    // Read every time, and not kept: a change made now is never notified to this feed.
    await pool.query(`UPDATE users SET role = 'OWNER' WHERE id = $1`, [id]);
    assert.deepEqual(await lookUp(id), { account: { id, role: 'OWNER' }, read: true });
    assert.equal((await lookUp(id)).read, true);
    assert.equal(accounts.size, 0);

    await until(() => feed.trusted, 'the feed listens again');
    assert.equal((await lookUp(id)).read, true);
    assert.equal((await lookUp(id)).read, false);
    await pool.query(`UPDATE users SET role = 'ADMIN' WHERE id = $1`, [id]);
    await heardAllSoFar();
    assert.deepEqual(await lookUp(id), { account: { id, role: 'ADMIN' }, read: true });
  });
});
