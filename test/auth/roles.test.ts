import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, logIn, signUp } from '../support/fixtures.js';

const SET_ROLE = 'mutation SetRole($u: ID!, $r: Role!) { setUserRole(userId: $u, role: $r) { id role } }';
const ADMIN = { email: 'root@modelmarket.test', password: 'an admin passphrase' };

describe('roles and the first admin', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  });
  after(() => server.close());

  it('creates the configured admin at start, once', async () => {
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const me = await server.gql('{ me { role } }', {}, { token: admin.token });
    assert.equal(me.data!.me.role, 'ADMIN');
    const outcome = await server.app.services.auth.ensureAdmin(ADMIN.email, ADMIN.password);
    assert.equal(outcome, 'already-admin');
    const { rows } = await server.sql.query(`SELECT count(*)::int AS n FROM users WHERE role = 'ADMIN'`);
    assert.equal(rows[0].n, 1);
  });

  it('lets only admins change roles, and audits each change', async () => {
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const consumer = await signUp(server);
    const owner = await signUp(server, { role: 'OWNER' });
    expectError(await server.gql(SET_ROLE, { u: consumer.id, r: 'ADMIN' }, { token: consumer.token }), 'FORBIDDEN');
    expectError(await server.gql(SET_ROLE, { u: consumer.id, r: 'OWNER' }, { token: owner.token }), 'FORBIDDEN');
    expectError(await server.gql(SET_ROLE, { u: consumer.id, r: 'OWNER' }), 'UNAUTHENTICATED');
    const adminKey = await createApiKey(server, admin.token, ['PREDICT', 'READ_USAGE', 'MANAGE_MODELS']);
    expectError(await server.gql(SET_ROLE, { u: consumer.id, r: 'OWNER' }, { apiKey: adminKey.secret }), 'FORBIDDEN');

    const changed = await server.gql(SET_ROLE, { u: consumer.id, r: 'OWNER' }, { token: admin.token });
    assert.deepEqual(changed.data!.setUserRole, { id: consumer.id, role: 'OWNER' });
    // The new role applies to the user's existing session at once.
    const me = await server.gql('{ me { role } }', {}, { token: consumer.token });
    assert.equal(me.data!.me.role, 'OWNER');
    const { rows } = await server.sql.query(
      `SELECT actor_id, details FROM audit_events WHERE action = 'user.role_changed' AND target_id = $1`,
      [consumer.id],
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].actor_id, admin.id);
    assert.deepEqual(rows[0].details, { from: 'CONSUMER', to: 'OWNER' });
  });

  it('answers bad ids clearly', async () => {
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    expectError(await server.gql(SET_ROLE, { u: 'nope', r: 'OWNER' }, { token: admin.token }), 'BAD_USER_INPUT');
    expectError(
      await server.gql(SET_ROLE, { u: '00000000-0000-4000-8000-000000000000', r: 'OWNER' }, { token: admin.token }),
      'NOT_FOUND',
    );
  });

  it('creates admins with `npm run admin:create`', async () => {
    const run = promisify(execFile);
    const args = [
      '--import',
      'tsx',
      'scripts/admin-create.ts',
      '--email',
      'second@modelmarket.test',
      '--password',
      'another admin phrase',
    ];
    const env = { ...process.env, ...server.env, LOG_LEVEL: 'warn' };
    const first = await run(process.execPath, args, { env });
    assert.match(first.stdout, /created admin second@modelmarket\.test/);
    const second = await run(process.execPath, args, { env });
    assert.match(second.stdout, /already an admin/);
    const admin = await logIn(server, 'second@modelmarket.test', 'another admin phrase');
    assert.equal((await server.gql('{ me { role } }', {}, { token: admin.token })).data!.me.role, 'ADMIN');
  });
});
