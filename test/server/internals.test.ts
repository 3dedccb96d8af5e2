// Issue 9, row 14: the default mode leaks no internals (stack traces, file paths, SQL), and /metrics can be
// closed with a token.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { expectError, signUp } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';

const INTERNALS = /stacktrace|\.ts:\d|node_modules|\/src\/|SELECT|relation|display_name|prisma|invalid byte sequence/i;

/** Makes `me { displayName }` fail inside the database, runs `check`, then repairs the table. */
async function withBrokenUsersTable(server: TestServer, check: () => Promise<void>): Promise<void> {
  await server.sql.query('ALTER TABLE users RENAME COLUMN display_name TO display_name_gone');
  try {
    await check();
  } finally {
    await server.sql.query('ALTER TABLE users RENAME COLUMN display_name_gone TO display_name');
  }
}

describe('default mode: no internals in responses', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('masks a database failure: no stack trace, file path or SQL message', async () => {
    const user = await signUp(server);
    await withBrokenUsersTable(server, async () => {
      const res = await server.gql('{ me { id displayName } }', {}, { token: user.token });
      const error = expectError(res, 'INTERNAL_SERVER_ERROR');
      assert.equal(error.message, 'Internal server error');
      assert.deepEqual(Object.keys(error.extensions!), ['code']);
      assert.doesNotMatch(JSON.stringify(res.errors), INTERNALS);
    });
  });

  it('answers a NUL in an argument without the raw PostgreSQL message or a stack trace', async () => {
    const res = await server.gql('query M($slug: String!) { model(slug: $slug) { id } }', { slug: 'a\u0000' });
    assert.ok(res.errors?.length, JSON.stringify(res));
    assert.doesNotMatch(JSON.stringify(res.errors), INTERNALS);
  });

  it('answers a malformed URL path and an out-of-range export date as client errors, not internal ones', async () => {
    const path = await fetch(`${server.origin}/v1/versions/%ZZ/model.json`);
    assert.equal(path.status, 400);
    assert.equal(((await path.json()) as any).errors[0].extensions.code, 'BAD_REQUEST');
    const user = await signUp(server);
    for (const from of ['-000001-01-01T00:00:00Z', '+275760-09-13T00:00:00Z']) {
      const csv = await fetch(`${server.origin}/v1/usage.csv?from=${encodeURIComponent(from)}`, {
        headers: { authorization: `Bearer ${user.token}` },
      });
      assert.equal(csv.status, 400, from);
      assert.equal(((await csv.json()) as any).error.code, 'BAD_USER_INPUT');
    }
  });

  it('serves /metrics without a token when none is configured', async () => {
    const response = await fetch(`${server.origin}/metrics`);
    assert.equal(response.status, 200);
  });
});

describe('DEBUG_ERRORS=true and METRICS_TOKEN', () => {
  let server: TestServer;
  const token = 'metrics-token-0123456789';
  before(async () => {
    server = await startTestServer({ DEBUG_ERRORS: 'true', METRICS_TOKEN: token });
  });
  after(() => server.close());

  it('shows internal details only when DEBUG_ERRORS is set explicitly', async () => {
    const user = await signUp(server);
    await withBrokenUsersTable(server, async () => {
      const res = await server.gql('{ me { id displayName } }', {}, { token: user.token });
      const error = expectError(res, 'INTERNAL_SERVER_ERROR');
      assert.notEqual(error.message, 'Internal server error');
      assert.ok(Array.isArray(error.extensions!.stacktrace));
    });
  });

  it('closes /metrics to callers without the token', async () => {
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789', token, `Bearer ${token}x`]) {
      const response = await fetch(`${server.origin}/metrics`, {
        headers: authorization ? { authorization } : {},
      });
      assert.equal(response.status, 401, String(authorization));
      assert.equal(((await response.json()) as any).errors[0].extensions.code, 'UNAUTHENTICATED');
    }
    const allowed = await fetch(`${server.origin}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(allowed.status, 200);
    assert.match(await allowed.text(), /mm_graphql_requests_total/);
  });
});
