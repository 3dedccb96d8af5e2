// Issue 9 row 12: one HTTP request may ask for only a few credential checks (logIn, signUp,
// refreshSession), counted across a batch, aliases and fragments; over the budget nothing runs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { signUp, uniqueEmail } from '../support/fixtures.js';

async function post(server: TestServer, body: unknown) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

const aliasedLogIns = (email: string, count: number) =>
  `mutation { ${Array.from(
    { length: count },
    (_, i) => `a${i}: logIn(email: "${email}", password: "guess number ${i}") { expiresIn }`,
  ).join(' ')} }`;

/** Password checks and refusals the server recorded for these e-mail addresses. */
async function logInEvents(server: TestServer, emails: string[]): Promise<number> {
  const { rows } = await server.sql.query(
    `SELECT count(*)::int AS n FROM audit_events WHERE target_id = ANY($1) AND action LIKE 'auth.log_in%'`,
    [emails],
  );
  return rows[0].n;
}

function expectRefused(res: { status: number; body: any }, holds: number) {
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.equal(res.body.errors[0].extensions.code, 'CREDENTIAL_CHECK_LIMIT_EXCEEDED');
  assert.match(res.body.errors[0].message, new RegExp(`at most 3 .*holds ${holds}\\)`));
}

describe('credential checks per HTTP request', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('refuses a batch of 10 operations × 15 aliased logIns before any password is checked', async () => {
    const victim = await signUp(server);
    const batch = Array.from({ length: 10 }, () => ({ query: aliasedLogIns(victim.email, 15) }));
    expectRefused(await post(server, batch), 150);
    assert.equal(await logInEvents(server, [victim.email]), 0, 'no logIn resolver ran');
    const { rows } = await server.sql.query(`SELECT count(*)::int AS n FROM rate_limits WHERE key LIKE 'login_%'`);
    assert.equal(rows[0].n, 0, 'no attempt was taken');
  });

  it('counts aliases in one operation: 4 are refused, 3 may run', async () => {
    const victim = await signUp(server);
    expectRefused(await post(server, { query: aliasedLogIns(victim.email, 4) }), 4);
    assert.equal(await logInEvents(server, [victim.email]), 0);
    // Within the budget the operation runs (serially; the first failed non-null logIn ends it).
    const allowed = await post(server, { query: aliasedLogIns(victim.email, 3) });
    assert.equal(allowed.status, 401);
    assert.equal(allowed.body.errors[0].extensions.code, 'UNAUTHENTICATED');
    assert.ok((await logInEvents(server, [victim.email])) > 0);
  });

  it('counts fields inside fragments, and every kind of credential field', async () => {
    const email = uniqueEmail('fragment');
    const query = `mutation {
      ...Guesses
      ... on Mutation { c: refreshSession(refreshToken: "mmr_nothing") { expiresIn } }
    }
    fragment Guesses on Mutation {
      a: logIn(email: "${email}", password: "first guess!") { expiresIn }
      b: signUp(input: { email: "${email}", password: "a sturdy passphrase", displayName: "F", role: CONSUMER }) { expiresIn }
      ... on Mutation { d: logIn(email: "${email}", password: "second guess") { expiresIn } }
    }`;
    const before = await server.sql.query('SELECT count(*)::int AS n FROM users');
    expectRefused(await post(server, { query }), 4);
    const afterRows = await server.sql.query('SELECT count(*)::int AS n FROM users');
    assert.equal(afterRows.rows[0].n, before.rows[0].n, 'signUp did not run');
    assert.equal(await logInEvents(server, [email]), 0);
  });

  it('counts across the operations of a batch: one over the budget refuses them all', async () => {
    const victim = await signUp(server);
    const other = uniqueEmail('batch');
    const batch = [
      { query: aliasedLogIns(victim.email, 2) },
      {
        query: `mutation { signUp(input: { email: "${other}", password: "a sturdy passphrase", displayName: "B", role: CONSUMER }) { expiresIn } }`,
      },
      { query: 'mutation { refreshSession(refreshToken: "mmr_nothing") { expiresIn } }' },
    ];
    expectRefused(await post(server, batch), 4);
    assert.equal(await logInEvents(server, [victim.email]), 0);
    const { rows } = await server.sql.query('SELECT count(*)::int AS n FROM users WHERE email = $1', [other]);
    assert.equal(rows[0].n, 0);
  });

  it('lets ordinary requests through, also when their text names the fields elsewhere', async () => {
    const res = await post(server, { query: '# logIn signUp refreshSession logIn\n{ me { id } }' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { data: { me: null } });
  });

  it('refuses hash-only (persisted) operations, whose text the budget cannot see', async () => {
    const res = await post(server, {
      extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } },
    });
    assert.equal(res.body.errors[0].extensions.code, 'PERSISTED_QUERY_NOT_SUPPORTED');
  });
});

describe('sign-ups per client address (SIGNUP_MAX_PER_IP)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ SIGNUP_MAX_PER_IP: '3' });
  });
  after(() => server.close());

  it('caps concurrent sign-ups from one address before any password is hashed, creating nothing past the cap', async () => {
    // One sign-up per request, so the per-request budget is not what refuses them.
    const attempts = await Promise.all(
      Array.from({ length: 10 }, () =>
        server.gql('mutation S($i: SignUpInput!) { signUp(input: $i) { expiresIn } }', {
          i: { email: uniqueEmail(), password: 'a sturdy passphrase', displayName: 'Many', role: 'CONSUMER' },
        }),
      ),
    );
    const refused = attempts.filter((res) => res.errors?.[0]?.extensions?.code === 'RATE_LIMITED');
    assert.equal(attempts.length - refused.length, 3, JSON.stringify(attempts.map((res) => res.errors)));
    assert.ok(refused.every((res) => res.errors![0]!.extensions!.retryAfter > 0));
    const { rows } = await server.sql.query('SELECT count(*)::int AS n FROM users');
    assert.equal(rows[0].n, 3);
  });
});
