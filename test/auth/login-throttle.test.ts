// Issue 9 row 7: a concurrent burst of guesses gets at most N password checks. A password check is
// observed through the audit log: every checked attempt writes auth.log_in or auth.log_in_failed, every
// refused one auth.log_in_throttled.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type GraphQLResponse, type TestServer } from '../support/server.js';
import { expectError, LOG_IN, signUp, uniqueEmail } from '../support/fixtures.js';

async function checkedAttempts(server: TestServer, targets: string[]): Promise<Record<string, number>> {
  const { rows } = await server.sql.query<{ action: string; n: number }>(
    `SELECT action, count(*)::int AS n FROM audit_events
      WHERE target_id = ANY($1) AND action LIKE 'auth.log_in%' GROUP BY action`,
    [targets],
  );
  return Object.fromEntries(rows.map((r) => [r.action, r.n]));
}

const codeOf = (res: GraphQLResponse) => res.errors?.[0]?.extensions?.code ?? 'OK';

describe('log-in throttling under concurrency', () => {
  let server: TestServer;
  before(async () => {
    // A slower hash (2^14) keeps each check well longer than taking an attempt, as in production.
    server = await startTestServer({
      LOGIN_MAX_FAILURES_PER_ACCOUNT: '5',
      LOGIN_LOCK_SECONDS: '60',
      PASSWORD_SCRYPT_LOG2N: '14',
    });
  });
  after(() => server.close());

  it('checks at most 5 passwords for 30 concurrent wrong log-ins, and the right one inside the burst does not unlock', async () => {
    const user = await signUp(server);
    const burst = Array.from({ length: 30 }, () =>
      server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }),
    );
    const right = server.gql(LOG_IN, { email: user.email, password: user.password });
    const wrongResults = await Promise.all(burst);
    const rightResult = await right;

    for (const res of wrongResults) assert.ok(['UNAUTHENTICATED', 'RATE_LIMITED'].includes(codeOf(res)), codeOf(res));
    const audit = await checkedAttempts(server, [user.email, user.id]);
    const checks = (audit['auth.log_in_failed'] ?? 0) + (audit['auth.log_in'] ?? 0);
    assert.ok(checks <= 5, `${checks} password checks: ${JSON.stringify(audit)}`);
    assert.equal(checks + (audit['auth.log_in_throttled'] ?? 0), 31, JSON.stringify(audit));
    if (codeOf(rightResult) === 'OK') {
      // It took one of the 5 attempts: it was checked, and it succeeded.
      assert.equal(audit['auth.log_in'], 1);
    } else {
      expectError(rightResult, 'RATE_LIMITED');
      assert.equal(audit['auth.log_in'] ?? 0, 0);
    }

    // The burst used up the window: the right password is still refused, without a check.
    const later = expectError(await server.gql(LOG_IN, { email: user.email, password: user.password }), 'RATE_LIMITED');
    assert.ok(later.extensions!.retryAfter > 0);
    const afterwards = await checkedAttempts(server, [user.email, user.id]);
    assert.equal((afterwards['auth.log_in_failed'] ?? 0) + (afterwards['auth.log_in'] ?? 0), checks);
  });

  it('a right password after the limit is refused without being checked', async () => {
    const user = await signUp(server);
    for (let i = 0; i < 4; i++) {
      expectError(await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }), 'UNAUTHENTICATED');
    }
    expectError(await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' }), 'RATE_LIMITED');
    const refused = await server.gql(LOG_IN, { email: user.email, password: user.password });
    const error = expectError(refused, 'RATE_LIMITED');
    // HTTP 429 with Retry-After, and the wait in words, not only in extensions.
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), String(error.extensions!.retryAfter));
    assert.match(error.message, /^Too many failed log-in attempts; try again in \d+ seconds?$/);
    assert.deepEqual(await checkedAttempts(server, [user.email, user.id]), {
      'auth.log_in_failed': 5,
      'auth.log_in_throttled': 1,
    });
  });
});

describe('log-in throttling per client address under concurrency', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ LOGIN_MAX_FAILURES_PER_IP: '4' });
  });
  after(() => server.close());

  it('checks at most 4 passwords for 20 concurrent wrong log-ins on different accounts from one address', async () => {
    const emails = Array.from({ length: 20 }, () => uniqueEmail('spray'));
    const results = await Promise.all(
      emails.map((email) => server.gql(LOG_IN, { email, password: 'wrong password!' })),
    );
    for (const res of results) assert.ok(['UNAUTHENTICATED', 'RATE_LIMITED'].includes(codeOf(res)), codeOf(res));
    const audit = await checkedAttempts(server, emails);
    assert.ok((audit['auth.log_in_failed'] ?? 0) <= 4, JSON.stringify(audit));
    assert.equal((audit['auth.log_in_failed'] ?? 0) + (audit['auth.log_in_throttled'] ?? 0), 20);
  });
});

describe('log-in input that can never match an account', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  const rows = async () =>
    (
      await server.sql.query(
        `SELECT (SELECT count(*)::int FROM audit_events) AS audit, (SELECT count(*)::int FROM rate_limits) AS limits`,
      )
    ).rows[0];

  it('refuses a NUL in the address, an overlong address or password with BAD_USER_INPUT, changing nothing', async () => {
    const before = await rows();
    for (const [variables, field] of [
      // A NUL is refused at the front door, before any resolver (src/server/storable-input.ts).
      [{ email: 'eve\u0000@example.com', password: 'wrong password!' }, 'variables.email'],
      [{ email: `${'a'.repeat(64)}@${'b'.repeat(250)}.com`, password: 'wrong password!' }, 'email'],
      [{ email: uniqueEmail(), password: 'x'.repeat(257) }, 'password'],
    ] as const) {
      const error = expectError(await server.gql(LOG_IN, variables), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field);
    }
    const signUpNul = await server.gql('mutation S($i: SignUpInput!) { signUp(input: $i) { expiresIn } }', {
      i: { email: 'eve\u0000@example.com', password: 'a sturdy passphrase', displayName: 'Eve', role: 'CONSUMER' },
    });
    assert.equal(expectError(signUpNul, 'BAD_USER_INPUT').extensions!.field, 'variables.i.email');
    assert.deepEqual(await rows(), before);
  });

  it('throttles the longest valid address like any other', async () => {
    const email = `${'a'.repeat(64)}@${'b'.repeat(185)}.com`;
    assert.equal(email.length, 254);
    expectError(await server.gql(LOG_IN, { email, password: 'wrong password!' }), 'UNAUTHENTICATED');
  });
});
