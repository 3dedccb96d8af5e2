import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp } from '../support/fixtures.js';

async function post(server: TestServer, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: response.status, body: (await response.json()) as any };
}

describe('request limits and error shape', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      GRAPHQL_MAX_DEPTH: '2',
      GRAPHQL_MAX_ALIASES: '3',
      GRAPHQL_MAX_COST: '20',
      GRAPHQL_MAX_TOKENS: '300',
      GRAPHQL_MAX_BATCH: '3',
      BODY_LIMIT_BYTES: '4096',
    });
  });
  after(() => server.close());

  it('rejects a query deeper than the limit before running it', async () => {
    const before = await server.sql.query('SELECT count(*)::int AS n FROM users');
    const res = await server.gql(
      'mutation { signUp(input: {email: "deep@example.com", password: "a sturdy passphrase", displayName: "D", role: OWNER}) { user { id } } }',
    );
    expectError(res, 'GRAPHQL_VALIDATION_FAILED');
    const afterRows = await server.sql.query('SELECT count(*)::int AS n FROM users');
    assert.equal(afterRows.rows[0].n, before.rows[0].n, 'no resolver ran');
    assert.match(res.errors![0]!.message, /depth/i);
  });

  it('rejects too many aliases', async () => {
    const res = await server.gql('{ a: me { id } b: me { id } c: me { id } d: me { id } }');
    expectError(res, 'GRAPHQL_VALIDATION_FAILED');
    assert.match(res.errors![0]!.message, /alias/i);
  });

  it('rejects a query over the cost limit', async () => {
    const res = await server.gql(
      '{ a: me { id email displayName role createdAt } b: me { id email displayName role createdAt } c: me { id email displayName role createdAt } }',
    );
    expectError(res, 'GRAPHQL_VALIDATION_FAILED');
    assert.match(res.errors![0]!.message, /cost/i);
  });

  it('rejects a document with too many tokens, and syntax errors, as parse failures (400)', async () => {
    const huge = await server.gql(`{ me { ${'id '.repeat(400)} } }`);
    expectError(huge, 'GRAPHQL_PARSE_FAILED');
    assert.equal(huge.status, 400);
    // Data written into the query is the usual cause: the message says to send it as variables.
    assert.match(huge.errors![0]!.message, /more than \d+ tokens: send large inputs as variables/);
    const broken = await server.gql('{ me { id }');
    expectError(broken, 'GRAPHQL_PARSE_FAILED');
    assert.equal(broken.status, 400);
  });

  it('answers batches up to the limit, and refuses larger or empty ones', async () => {
    const op = { query: '{ me { id } }' };
    const ok = await post(server, JSON.stringify([op, op, op]));
    assert.equal(ok.status, 200);
    assert.equal(ok.body.length, 3);
    const tooMany = await post(server, JSON.stringify([op, op, op, op]));
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.errors[0].extensions.code, 'BATCH_LIMIT_EXCEEDED');
    const empty = await post(server, '[]');
    assert.equal(empty.body.errors[0].extensions.code, 'BATCH_LIMIT_EXCEEDED');
  });

  it('refuses oversized bodies with 413 and malformed JSON with 400, as GraphQL-shaped errors', async () => {
    const big = await post(server, JSON.stringify({ query: '{ me { id } }', variables: { pad: 'x'.repeat(5000) } }));
    assert.equal(big.status, 413);
    assert.equal(big.body.errors[0].extensions.code, 'PAYLOAD_TOO_LARGE');
    const malformed = await post(server, '{"query": ');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.errors[0].extensions.code, 'BAD_REQUEST');
  });

  it('keeps CSRF prevention on: a simple GET without a preflight header is refused', async () => {
    const response = await fetch(`${server.url}?query=${encodeURIComponent('{ me { id } }')}`);
    assert.equal(response.status, 400);
    const withHeader = await fetch(`${server.url}?query=${encodeURIComponent('{ me { id } }')}`, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    assert.equal(withHeader.status, 200);
  });

  it('echoes a sane x-request-id and makes one otherwise', async () => {
    const res = await server.gql('{ me { id } }', {}, { headers: { 'x-request-id': 'trace-123' } });
    assert.equal(res.headers.get('x-request-id'), 'trace-123');
    const other = await server.gql('{ me { id } }', {}, { headers: { 'x-request-id': 'bad id with spaces' } });
    assert.match(other.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/);
  });
});

describe('operations endpoints', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('serves liveness and readiness', async () => {
    assert.equal((await fetch(`${server.origin}/healthz`)).status, 200);
    const ready = await fetch(`${server.origin}/readyz`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as any;
    assert.equal(body.status, 'ready');
    assert.equal(body.database, 'ok');
    assert.equal(body.migrations, 'applied');
    assert.ok(['tensorflow', 'wasm', 'cpu'].includes(body.inference.backend));
  });

  it('reports not ready while a migration is pending', async () => {
    const { rows } = await server.sql.query('SELECT * FROM _prisma_migrations ORDER BY started_at DESC LIMIT 1');
    await server.sql.query('DELETE FROM _prisma_migrations WHERE id = $1', [rows[0].id]);
    try {
      const ready = await fetch(`${server.origin}/readyz`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as any;
      assert.deepEqual(body.migrations.pending, [rows[0].migration_name]);
    } finally {
      const columns = Object.keys(rows[0]);
      await server.sql.query(
        `INSERT INTO _prisma_migrations (${columns.join(',')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(',')})`,
        columns.map((c) => rows[0][c]),
      );
    }
  });

  it('exposes Prometheus metrics by operation and error code', async () => {
    await signUp(server);
    await server.gql('{ myApiKeys { id } }');
    const text = await (await fetch(`${server.origin}/metrics`)).text();
    assert.match(text, /mm_graphql_requests_total\{operation="mutation:signUp",outcome="ok"\} \d+/);
    assert.match(text, /mm_graphql_errors_total\{code="UNAUTHENTICATED"\} \d+/);
    assert.match(text, /mm_graphql_request_duration_seconds_bucket\{le="0.005",operation="mutation:signUp"\}/);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const response = await fetch(`${server.origin}/nope`);
    assert.equal(response.status, 404);
    assert.equal(((await response.json()) as any).errors[0].extensions.code, 'NOT_FOUND');
  });
});

describe('production mode', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ MODE: 'production' });
  });
  after(() => server.close());

  it('turns introspection and the landing page off', async () => {
    expectError(await server.gql('{ __schema { queryType { name } } }'), 'GRAPHQL_VALIDATION_FAILED');
    const page = await fetch(server.url, { headers: { accept: 'text/html' } });
    assert.notEqual(page.status, 200);
  });

  it('masks internal errors: no message details, SQL or stack traces', async () => {
    const user = await signUp(server);
    await server.sql.query('ALTER TABLE users RENAME COLUMN display_name TO display_name_gone');
    try {
      const res = await server.gql('{ me { id displayName } }', {}, { token: user.token });
      const error = expectError(res, 'INTERNAL_SERVER_ERROR');
      assert.equal(error.message, 'Internal server error');
      assert.deepEqual(Object.keys(error.extensions!), ['code']);
      assert.ok(!JSON.stringify(res).match(/display_name|SELECT|prisma|at /i));
    } finally {
      await server.sql.query('ALTER TABLE users RENAME COLUMN display_name_gone TO display_name');
    }
  });

  it('keeps client errors readable', async () => {
    const res = await server.gql('{ myApiKeys { id } }');
    const error = expectError(res, 'UNAUTHENTICATED');
    assert.equal(error.message, 'Authentication required');
    assert.equal(error.extensions!.stacktrace, undefined);
  });
});
