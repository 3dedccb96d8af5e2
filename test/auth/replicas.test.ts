// Two server processes on one database: A (this process) and B (a child process). B caches tokens, sessions,
// keys, accounts, contracts and the catalog; a change made through A (or a script, or raw SQL) must reach B's
// next request, and B must read the database while its change feed is down.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createApiKey, expectError, logIn, signUp } from '../support/fixtures.js';
import { accept, createPlan, transition } from '../support/licensing.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { gqlAt, startTestServer, type Credentials, type TestServer } from '../support/server.js';

const ADMIN = { email: 'root@replicas.test', password: 'an admin passphrase' };
const ME = '{ me { id role } }';
const LOG_OUT = 'mutation Out($t: String!) { logOut(refreshToken: $t) }';
const REFRESH = 'mutation R($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }';
const SET_ROLE = 'mutation SetRole($u: ID!, $r: Role!) { setUserRole(userId: $u, role: $r) { id role } }';
const REVOKE_KEY = 'mutation Revoke($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const CREATE_MODEL = 'mutation M($input: CreateModelInput!) { createModel(input: $input) { id } }';
const ARCHIVE = 'mutation A($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { status } }';

describe('replicas: a change made through one server process applies to the next request on another', () => {
  let a: TestServer;
  let b: ServerProcess;
  let dataDir: string;
  const onB = (query: string, variables?: Record<string, unknown>, auth?: Credentials) =>
    gqlAt(b.url, query, variables, auth);

  /** B's change feed as its /metrics reports it. */
  async function feedTrustedOnB(): Promise<boolean> {
    const text = await (await fetch(new URL('/metrics', b.url))).text();
    const match = /^mm_change_feed_trusted (\d)/m.exec(text);
    assert.ok(match, 'B reports mm_change_feed_trusted');
    return match[1] === '1';
  }

  async function waitForFeedOnB(trusted: boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while ((await feedTrustedOnB()) !== trusted) {
      assert.ok(Date.now() < deadline, `B's change feed never became ${trusted ? 'trusted' : 'untrusted'}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** `me` on B, twice: the second answer comes from B's caches while its feed is trusted. */
  async function meOnB(auth: Credentials) {
    assert.equal((await onB(ME, {}, auth)).errors, undefined);
    const res = await onB(ME, {}, auth);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.me as { id: string; role: string };
  }

  before(async () => {
    const shared = {
      JWT_ISSUER: 'http://replicas.modelmarket.test',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    };
    a = await startTestServer(shared);
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-replica-'));
    b = await startServerProcess({
      ...shared,
      DATABASE_URL: a.databaseUrl,
      DATA_DIR: dataDir,
      APP_SECRET: a.env.APP_SECRET!,
      DATABASE_POOL_SIZE: '5',
      PASSWORD_SCRYPT_LOG2N: '12',
      INFERENCE_WORKERS: '1',
      PREPROCESSING_WORKERS: '1',
    });
    await waitForFeedOnB(true);
  });

  after(async () => {
    await stopServerProcess(b.child);
    await a.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('log-out on A ends the session on B', async () => {
    const user = await signUp(a);
    await meOnB({ token: user.token });
    assert.equal((await a.gql(LOG_OUT, { t: user.refreshToken })).data!.logOut, true);
    expectError(await onB(ME, {}, { token: user.token }), 'UNAUTHENTICATED');
  });

  it('a re-used refresh token on A revokes the session on B', async () => {
    const user = await signUp(a);
    const rotated = await a.gql(REFRESH, { t: user.refreshToken });
    const { accessToken } = rotated.data!.refreshSession as { accessToken: string };
    await meOnB({ token: accessToken });
    expectError(await a.gql(REFRESH, { t: user.refreshToken }), 'UNAUTHENTICATED');
    expectError(await onB(ME, {}, { token: accessToken }), 'UNAUTHENTICATED');
  });

  it('admin:create --reset-password (a script, its own process) ends the account’s sessions and keys on B', async () => {
    const squatter = await signUp(a, { role: 'OWNER' });
    const key = await createApiKey(a, squatter.token, ['PREDICT']);
    await meOnB({ token: squatter.token });
    await meOnB({ apiKey: key.secret });
    const args = ['--import', 'tsx', 'scripts/admin-create.ts', '--email', squatter.email];
    await promisify(execFile)(
      process.execPath,
      [...args, '--password', 'the operator’s passphrase', '--reset-password'],
      {
        env: { ...process.env, ...a.env, LOG_LEVEL: 'warn' },
      },
    );
    expectError(await onB(ME, {}, { token: squatter.token }), 'UNAUTHENTICATED');
    expectError(await onB(ME, {}, { apiKey: key.secret }), 'UNAUTHENTICATED');
  });

  it('an API key revoked on A is refused by B', async () => {
    const user = await signUp(a);
    const key = await createApiKey(a, user.token, ['PREDICT']);
    await meOnB({ apiKey: key.secret });
    assert.equal((await a.gql(REVOKE_KEY, { id: key.apiKey.id }, { token: user.token })).errors, undefined);
    expectError(await onB(ME, {}, { apiKey: key.secret }), 'UNAUTHENTICATED');
  });

  it('a role changed on A applies on B at once, to me and to what the session may do', async () => {
    const admin = await logIn(a, ADMIN.email, ADMIN.password);
    const owner = await signUp(a, { role: 'OWNER' });
    const key = await createApiKey(a, owner.token, ['MANAGE_MODELS']);
    assert.equal((await meOnB({ token: owner.token })).role, 'OWNER');
    assert.equal((await meOnB({ apiKey: key.secret })).role, 'OWNER');
    const model = {
      slug: `replica-${owner.id.slice(0, 8)}`,
      name: 'Replica',
      task: 'REGRESSION',
      visibility: 'PUBLIC',
    };
    assert.equal((await onB(CREATE_MODEL, { input: model }, { token: owner.token })).errors, undefined);

    const demoted = await a.gql(SET_ROLE, { u: owner.id, r: 'CONSUMER' }, { token: admin.token });
    assert.equal(demoted.errors, undefined, JSON.stringify(demoted.errors));
    assert.equal((await onB(ME, {}, { token: owner.token })).data!.me.role, 'CONSUMER');
    assert.equal((await onB(ME, {}, { apiKey: key.secret })).data!.me.role, 'CONSUMER');
    const again = { ...model, slug: `${model.slug}-2` };
    expectError(await onB(CREATE_MODEL, { input: again }, { token: owner.token }), 'FORBIDDEN');
  });

  it('a contract suspended and a version archived on A are refused by B', async () => {
    const owner = await signUp(a, { role: 'OWNER' });
    const { model } = await publishedMlp(a, { token: owner.token });
    const plan = await createPlan(a, { token: owner.token }, model.slug);
    const consumer = await signUp(a);
    const contract = await accept(a, { token: consumer.token }, plan.id);
    const key = await createApiKey(a, consumer.token, ['PREDICT']);
    const call = { input: { model: model.slug, version: '1.0.0', inputs: randomRows(1, 784, 1) } };
    for (let i = 0; i < 2; i++) assert.equal((await onB(PREDICT, call, { apiKey: key.secret })).errors, undefined);

    const suspended = await transition(a, { token: owner.token }, 'suspendContract', contract.id, 'unpaid invoice');
    assert.equal(suspended.errors, undefined, JSON.stringify(suspended.errors));
    const refused = expectError(await onB(PREDICT, call, { apiKey: key.secret }), 'FORBIDDEN');
    assert.equal(refused.extensions?.reason, 'SUSPENDED');

    // The owner predicts freely: only the catalog decides.
    for (let i = 0; i < 2; i++) assert.equal((await onB(PREDICT, call, { token: owner.token })).errors, undefined);
    const archived = await a.gql(ARCHIVE, { m: model.slug, v: '1.0.0' }, { token: owner.token });
    assert.equal(archived.errors, undefined, JSON.stringify(archived.errors));
    const gone = expectError(await onB(PREDICT, call, { token: owner.token }), 'FORBIDDEN');
    assert.equal(gone.extensions?.reason, 'VERSION_ARCHIVED');
  });

  it('B’s feed connection killed: B answers from the database until it listens again, then caches again', async () => {
    const [loggingOut, revokedBySql, steady] = [await signUp(a), await signUp(a), await signUp(a)];
    for (const user of [loggingOut, revokedBySql, steady]) await meOnB({ token: user.token });
    const revokeQuietly = async (sessionOf: string) => {
      // With the trigger off, no notification is sent: only a database read can see this revocation.
      await a.sql.query('ALTER TABLE sessions DISABLE TRIGGER sessions_change_feed');
      try {
        await a.sql.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'test' WHERE user_id = $1`, [
          sessionOf,
        ]);
      } finally {
        await a.sql.query('ALTER TABLE sessions ENABLE TRIGGER sessions_change_feed');
      }
    };

    const killed = await a.sql.query(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name LIKE $1`,
      [`modelmarket-feed:${b.child.pid}:%`],
    );
    assert.deepEqual(
      killed.rows.map((row) => row.ok),
      [true],
    );
    await waitForFeedOnB(false);
    assert.equal((await onB(ME, {}, { token: steady.token })).data!.me.id, steady.id);
    await revokeQuietly(revokedBySql.id);
    expectError(await onB(ME, {}, { token: revokedBySql.token }), 'UNAUTHENTICATED');
    assert.equal((await a.gql(LOG_OUT, { t: loggingOut.refreshToken })).data!.logOut, true);
    expectError(await onB(ME, {}, { token: loggingOut.token }), 'UNAUTHENTICATED');

    await waitForFeedOnB(true);
    assert.equal((await meOnB({ token: steady.token })).id, steady.id);
    // Cached again: a revocation nobody notifies is not seen (which is why every write path notifies).
    await revokeQuietly(steady.id);
    assert.equal((await onB(ME, {}, { token: steady.token })).data?.me?.id, steady.id);
  });
});
