// Issue 9 row 2: someone signs up with the address the operator later configures as ADMIN_EMAIL (or passes to
// `npm run admin:create`). That account must not become an admin unless the operator's password is its password.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, LOG_IN, signUp, uniqueEmail, type SignedUpUser } from '../support/fixtures.js';

const OPERATOR_PASSWORD = 'the operator passphrase';
const REFRESH = 'mutation R($t: String!) { refreshSession(refreshToken: $t) { accessToken } }';

async function roleOf(server: TestServer, userId: string): Promise<string> {
  const { rows } = await server.sql.query('SELECT role FROM users WHERE id = $1', [userId]);
  return rows[0].role;
}

async function auditOf(server: TestServer, userId: string) {
  const { rows } = await server.sql.query(
    `SELECT action, details FROM audit_events WHERE target_id = $1 AND action LIKE 'user.admin_%' ORDER BY id`,
    [userId],
  );
  return rows as { action: string; details: Record<string, unknown> }[];
}

/** A server on a database where `signedUp` happened first, restarted with ADMIN_EMAIL/ADMIN_PASSWORD. */
async function restartWithAdmin(
  signedUp: (server: TestServer) => Promise<SignedUpUser>,
  adminEmail: (user: SignedUpUser) => string,
): Promise<{ server: TestServer; user: SignedUpUser; apiKey: string }> {
  const APP_SECRET = randomBytes(32).toString('hex');
  const first = await startTestServer({ APP_SECRET });
  const user = await signedUp(first);
  const apiKey = (await createApiKey(first, user.token, ['PREDICT'])).secret;
  await first.stopKeepingDatabase();
  const server = await startTestServer({
    APP_SECRET,
    DATABASE_URL: first.databaseUrl,
    ADMIN_EMAIL: adminEmail(user),
    ADMIN_PASSWORD: OPERATOR_PASSWORD,
  });
  return { server, user, apiKey };
}

describe('admin bootstrap on an address someone signed up with first', () => {
  let server: TestServer;
  let attacker: SignedUpUser;
  let attackerKey: string;
  before(async () => {
    // The attacker signed up with a case and space variant of the address the operator configures.
    const address = uniqueEmail('root');
    ({
      server,
      user: attacker,
      apiKey: attackerKey,
    } = await restartWithAdmin(
      (s) => signUp(s, { email: `  ${address.toUpperCase()} ` }),
      () => address,
    ));
  });
  after(() => server.close());

  it('starts, but does not promote the account, and audits the refusal', async () => {
    assert.equal(await roleOf(server, attacker.id), 'CONSUMER');
    const me = await server.gql('{ me { role } }', {}, { token: attacker.token });
    assert.equal(me.data!.me.role, 'CONSUMER');
    expectError(
      await server.gql(LOG_IN, { email: attacker.email.trim().toLowerCase(), password: OPERATOR_PASSWORD }),
      'UNAUTHENTICATED',
    );
    assert.deepEqual(await auditOf(server, attacker.id), [
      { action: 'user.admin_bootstrap_refused', details: { role: 'CONSUMER' } },
    ]);
  });

  const run = promisify(execFile);
  const adminCreate = (...extra: string[]) =>
    run(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/admin-create.ts',
        '--email',
        attacker.email,
        '--password',
        OPERATOR_PASSWORD,
        ...extra,
      ],
      { env: { ...process.env, ...server.env, LOG_LEVEL: 'warn' } },
    );

  it('`npm run admin:create` refuses too, with a clear message and a failing exit code', async () => {
    await assert.rejects(adminCreate(), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /NOT made an admin/);
      assert.match(error.stderr, /--reset-password/);
      return true;
    });
    assert.equal(await roleOf(server, attacker.id), 'CONSUMER');
  });

  it('`admin:create --reset-password` sets the password, promotes, and revokes every session and key, audited', async () => {
    const { stdout } = await adminCreate('--reset-password');
    assert.match(stdout, /now an admin with the new password; all its sessions and API keys were revoked/);
    assert.equal(await roleOf(server, attacker.id), 'ADMIN');
    // The attacker's access token, refresh token, API key and password all stop working.
    expectError(await server.gql('{ me { role } }', {}, { token: attacker.token }), 'UNAUTHENTICATED');
    expectError(await server.gql('{ me { role } }', {}, { apiKey: attackerKey }), 'UNAUTHENTICATED');
    expectError(await server.gql(REFRESH, { t: attacker.refreshToken }), 'UNAUTHENTICATED');
    const address = attacker.email.trim().toLowerCase();
    expectError(await server.gql(LOG_IN, { email: address, password: attacker.password }), 'UNAUTHENTICATED');
    const operator = await server.gql(LOG_IN, { email: address, password: OPERATOR_PASSWORD });
    assert.equal(operator.data!.logIn.user.role, 'ADMIN');
    const audit = await auditOf(server, attacker.id);
    assert.deepEqual(audit.at(-1), {
      action: 'user.admin_bootstrapped',
      details: { passwordReset: true, from: 'CONSUMER', sessionsRevoked: 1, apiKeysRevoked: 1 },
    });
  });

  it('`admin:create` with another password for an admin fails (exit 1): the password asked for was not set', async () => {
    const other = run(
      process.execPath,
      ['--import', 'tsx', 'scripts/admin-create.ts', '--email', attacker.email, '--password', 'another passphrase!'],
      { env: { ...process.env, ...server.env, LOG_LEVEL: 'warn' } },
    );
    await assert.rejects(other, (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /already an admin, with another password \(use --reset-password/);
      return true;
    });
  });
});

describe('admin bootstrap on the operator’s own earlier account', () => {
  it('promotes it when ADMIN_PASSWORD is its password, audited', async () => {
    const { server, user } = await restartWithAdmin(
      (s) => signUp(s, { role: 'OWNER', password: OPERATOR_PASSWORD }),
      (u) => u.email,
    );
    try {
      assert.equal(await roleOf(server, user.id), 'ADMIN');
      const me = await server.gql('{ me { role } }', {}, { token: user.token });
      assert.equal(me.data!.me.role, 'ADMIN', 'its sessions stay valid');
      assert.deepEqual(await auditOf(server, user.id), [
        { action: 'user.admin_bootstrapped', details: { promoted: true, from: 'OWNER' } },
      ]);
    } finally {
      await server.close();
    }
  });
});
