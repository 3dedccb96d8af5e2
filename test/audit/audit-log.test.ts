import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, LOG_IN, signUp } from '../support/fixtures.js';

describe('audit log', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('records identity events with actor, target, address and request id', async () => {
    const user = await signUp(server);
    await server.gql(
      LOG_IN,
      { email: user.email, password: user.password },
      { headers: { 'x-request-id': 'req-audit-1' } },
    );
    await server.gql(LOG_IN, { email: user.email, password: 'wrong password!' });
    const key = await createApiKey(server, user.token, ['PREDICT']);
    await server.gql(
      'mutation($id: ID!) { revokeApiKey(id: $id) { id } }',
      { id: key.apiKey.id },
      { token: user.token },
    );
    const { rows } = await server.sql.query(
      `SELECT action, actor_id, target_type, target_id, ip, request_id FROM audit_events
       WHERE actor_id = $1 ORDER BY id`,
      [user.id],
    );
    assert.deepEqual(
      rows.map((r) => r.action),
      ['auth.sign_up', 'auth.log_in', 'auth.log_in_failed', 'api_key.created', 'api_key.revoked'],
    );
    const logIn = rows[1];
    assert.equal(logIn.request_id, 'req-audit-1');
    assert.match(logIn.ip, /127\.0\.0\.1/);
    assert.equal(rows[3].target_id, key.apiKey.id);
  });

  it('is append-only for the database role the API uses', async () => {
    await signUp(server);
    await assert.rejects(() => server.sql.query(`UPDATE audit_events SET action = 'forged'`), /append-only/);
    await assert.rejects(() => server.sql.query('DELETE FROM audit_events'), /append-only/);
    await assert.rejects(() => server.sql.query('TRUNCATE audit_events'), /append-only/);
    const { rows } = await server.sql.query(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'forged'`);
    assert.equal(rows[0].n, 0);
  });
});
