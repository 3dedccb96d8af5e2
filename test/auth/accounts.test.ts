import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, LOG_IN, SIGN_UP, signUp, tableCounts, uniqueEmail } from '../support/fixtures.js';

describe('accounts: sign-up, log-in, me', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_LOCK_SECONDS: '60' });
  });
  after(() => server.close());

  it('signs up with a normalised e-mail and returns working credentials', async () => {
    const email = uniqueEmail('Mixed');
    const res = await server.gql(SIGN_UP, {
      input: {
        email: `  ${email.toUpperCase()} `,
        password: 'a sturdy passphrase',
        displayName: ' Ada ',
        role: 'OWNER',
      },
    });
    assert.equal(res.errors, undefined);
    const payload = res.data!.signUp;
    assert.equal(payload.user.email, email.toLowerCase());
    assert.equal(payload.user.displayName, 'Ada');
    assert.equal(payload.user.role, 'OWNER');
    assert.equal(payload.tokenType, 'Bearer');
    assert.equal(payload.expiresIn, 900);
    assert.match(payload.refreshToken, /^mmr_/);
    const me = await server.gql('{ me { id email role } }', {}, { token: payload.accessToken });
    assert.deepEqual(me.data!.me, { id: payload.user.id, email: email.toLowerCase(), role: 'OWNER' });
  });

  it('stores only a self-describing scrypt hash of the password', async () => {
    const user = await signUp(server);
    const { rows } = await server.sql.query('SELECT password_hash FROM users WHERE id = $1', [user.id]);
    const stored = rows[0].password_hash as string;
    assert.ok(!stored.includes(user.password));
    assert.match(stored, /^scrypt\$12\$8\$1\$[\w-]+\$[\w-]+$/);
  });

  it('answers me = null for anonymous callers', async () => {
    const res = await server.gql('{ me { id } }');
    assert.equal(res.status, 200);
    assert.equal(res.data!.me, null);
  });

  it('never lets anyone sign up as ADMIN', async () => {
    const before = await tableCounts(server);
    const res = await server.gql(SIGN_UP, {
      input: { email: uniqueEmail(), password: 'a sturdy passphrase', displayName: 'Eve', role: 'ADMIN' },
    });
    expectError(res, 'BAD_USER_INPUT');
    assert.deepEqual(await tableCounts(server), before);
  });

  const badInputs: [string, Record<string, string>, string, string][] = [
    ['a short password', { password: 'short1' }, 'input.password', 'at least 10'],
    [
      'a password equal to the e-mail',
      { email: 'same-as-pw@example.com', password: 'same-as-pw@example.com' },
      'input.password',
      'e-mail',
    ],
    ['a common password', { password: 'Password123' }, 'input.password', 'too common'],
    ['an invalid e-mail', { email: 'not-an-email' }, 'input.email', 'valid e-mail'],
    ['an empty display name', { displayName: '   ' }, 'input.displayName', '1 to 100'],
    ['an overlong display name', { displayName: 'x'.repeat(101) }, 'input.displayName', '1 to 100'],
  ];
  for (const [what, override, field, message] of badInputs) {
    it(`rejects ${what} with BAD_USER_INPUT and changes nothing`, async () => {
      const before = await tableCounts(server);
      const res = await server.gql(SIGN_UP, {
        input: {
          email: uniqueEmail(),
          password: 'a sturdy passphrase',
          displayName: 'Bob',
          role: 'CONSUMER',
          ...override,
        },
      });
      const error = expectError(res, 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field);
      assert.match(error.message, new RegExp(message));
      assert.deepEqual(await tableCounts(server), before);
    });
  }

  it('refuses a second account with the same e-mail in any case, changing nothing', async () => {
    const user = await signUp(server);
    const before = await tableCounts(server);
    const res = await server.gql(SIGN_UP, {
      input: { email: user.email.toUpperCase(), password: 'another passphrase', displayName: 'Dup', role: 'CONSUMER' },
    });
    expectError(res, 'CONFLICT');
    assert.deepEqual(await tableCounts(server), before);
  });

  it('logs in, and gives the same error for an unknown e-mail and a wrong password', async () => {
    const user = await signUp(server);
    const ok = await server.gql(LOG_IN, { email: user.email.toUpperCase(), password: user.password });
    assert.equal(ok.data!.logIn.user.id, user.id);
    const wrong = expectError(
      await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }),
      'UNAUTHENTICATED',
    );
    const unknown = expectError(
      await server.gql(LOG_IN, { email: uniqueEmail('ghost'), password: 'wrong password!' }),
      'UNAUTHENTICATED',
    );
    assert.equal(wrong.message, unknown.message);
  });

  it('locks an account after repeated failures, even for the right password, and audits it', async () => {
    const user = await signUp(server);
    for (let i = 0; i < 2; i++) {
      expectError(await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }), 'UNAUTHENTICATED');
    }
    const locked = expectError(
      await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }),
      'RATE_LIMITED',
    );
    assert.ok(locked.extensions!.retryAfter > 0 && locked.extensions!.retryAfter <= 60);
    const stillLocked = expectError(
      await server.gql(LOG_IN, { email: user.email, password: user.password }),
      'RATE_LIMITED',
    );
    assert.ok(stillLocked.extensions!.retryAfter > 0);
    const { rows } = await server.sql.query(
      `SELECT action, details FROM audit_events WHERE target_id = $1 AND action LIKE 'auth.log_in%' ORDER BY id`,
      [user.email],
    );
    assert.deepEqual(
      rows.map((r) => r.action),
      ['auth.log_in_failed', 'auth.log_in_failed', 'auth.log_in_failed', 'auth.log_in_throttled'],
    );
    assert.equal(rows[2].details.locked, true);
  });

  it('clears the failure count after a successful log-in', async () => {
    const user = await signUp(server);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) {
        expectError(await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }), 'UNAUTHENTICATED');
      }
      const ok = await server.gql(LOG_IN, { email: user.email, password: user.password });
      assert.equal(ok.errors, undefined);
    }
  });
});

describe('accounts: throttling per client address', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ LOGIN_MAX_FAILURES_PER_IP: '4' });
  });
  after(() => server.close());

  it('limits failures from one address across accounts', async () => {
    for (let i = 0; i < 3; i++) {
      expectError(await server.gql(LOG_IN, { email: uniqueEmail(), password: 'wrong password!' }), 'UNAUTHENTICATED');
    }
    expectError(await server.gql(LOG_IN, { email: uniqueEmail(), password: 'wrong password!' }), 'RATE_LIMITED');
    expectError(await server.gql(LOG_IN, { email: uniqueEmail(), password: 'wrong password!' }), 'RATE_LIMITED');
  });
});

describe('accounts: password cost upgrade', () => {
  it('rehashes a weaker stored hash at the next log-in', async () => {
    const APP_SECRET = randomBytes(32).toString('hex');
    const weak = await startTestServer({ PASSWORD_SCRYPT_LOG2N: '10', APP_SECRET });
    const user = await signUp(weak);
    await weak.stopKeepingDatabase();
    const strong = await startTestServer({ PASSWORD_SCRYPT_LOG2N: '13', DATABASE_URL: weak.databaseUrl, APP_SECRET });
    try {
      const before = await strong.sql.query('SELECT password_hash FROM users WHERE id = $1', [user.id]);
      assert.match(before.rows[0].password_hash, /^scrypt\$10\$/);
      const res = await strong.gql(LOG_IN, { email: user.email, password: user.password });
      assert.equal(res.errors, undefined);
      const afterRow = await strong.sql.query('SELECT password_hash FROM users WHERE id = $1', [user.id]);
      assert.match(afterRow.rows[0].password_hash, /^scrypt\$13\$/);
      const again = await strong.gql(LOG_IN, { email: user.email, password: user.password });
      assert.equal(again.errors, undefined);
    } finally {
      await strong.close();
    }
  });
});
