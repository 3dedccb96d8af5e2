import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { CREATE_API_KEY, createApiKey, expectError, signUp, tableCounts } from '../support/fixtures.js';

const MY_KEYS = '{ myApiKeys { id name prefix scopes lastUsedAt revokedAt } }';
const REVOKE = 'mutation Revoke($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const ME = '{ me { id } }';

describe('API keys', () => {
  let server: TestServer;
  before(async () => {
    // A long flush interval: lastUsedAt must come from the coalesced in-memory value, not a write per request.
    server = await startTestServer({ API_KEY_USAGE_FLUSH_MS: '3600000' });
  });
  after(() => server.close());

  it('creates a key whose secret is shown once, recognisable, and stored only as a hash', async () => {
    const user = await signUp(server, { role: 'OWNER' });
    const { secret, apiKey } = await createApiKey(
      server,
      user.token,
      ['PREDICT', 'READ_USAGE', 'PREDICT'],
      'ci runner',
    );
    assert.match(secret, /^mmk_[A-Za-z0-9]{8}_[\w-]{43}$/);
    assert.ok(secret.startsWith(`${apiKey.prefix}_`));
    assert.deepEqual(apiKey.scopes, ['PREDICT', 'READ_USAGE']);
    const { rows } = await server.sql.query('SELECT * FROM api_keys WHERE id = $1', [apiKey.id]);
    assert.equal(rows[0].secret_hash, createHash('sha256').update(secret).digest('hex'));
    assert.ok(!JSON.stringify(rows[0]).includes(secret.slice(13)), 'the secret part is never stored');
    const listed = await server.gql(MY_KEYS, {}, { token: user.token });
    assert.equal(listed.data!.myApiKeys[0].id, apiKey.id);
    assert.ok(!JSON.stringify(listed.data).includes(secret.slice(13)));
  });

  it('authenticates with Authorization: Bearer and with x-api-key', async () => {
    const user = await signUp(server);
    const { secret } = await createApiKey(server, user.token, ['PREDICT']);
    assert.equal((await server.gql(ME, {}, { token: secret })).data!.me.id, user.id);
    assert.equal((await server.gql(ME, {}, { apiKey: secret })).data!.me.id, user.id);
  });

  it('rejects unknown, malformed and tampered keys with UNAUTHENTICATED (401)', async () => {
    const user = await signUp(server);
    const { secret } = await createApiKey(server, user.token, ['PREDICT']);
    const tampered = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    for (const key of [tampered, 'mmk_AAAAAAAA_' + 'A'.repeat(43), 'mmk_short', 'garbage']) {
      const res = await server.gql(ME, {}, { apiKey: key });
      expectError(res, 'UNAUTHENTICATED');
      assert.equal(res.status, 401);
    }
  });

  it('refuses session-only operations to API keys (no key can mint keys)', async () => {
    const user = await signUp(server);
    const { secret } = await createApiKey(server, user.token, ['PREDICT', 'READ_USAGE', 'MANAGE_MODELS']);
    const before = await tableCounts(server);
    expectError(await server.gql(CREATE_API_KEY, { name: 'x', scopes: ['PREDICT'] }, { apiKey: secret }), 'FORBIDDEN');
    expectError(await server.gql(MY_KEYS, {}, { apiKey: secret }), 'FORBIDDEN');
    assert.deepEqual(await tableCounts(server), before);
  });

  it('validates names and scopes, changing nothing on bad input', async () => {
    const user = await signUp(server);
    const before = await tableCounts(server);
    const cases: [Record<string, unknown>, string][] = [
      [{ name: 'ok', scopes: [] }, 'scopes'],
      [{ name: '  ', scopes: ['PREDICT'] }, 'name'],
      [{ name: 'x'.repeat(101), scopes: ['PREDICT'] }, 'name'],
    ];
    for (const [variables, field] of cases) {
      const error = expectError(await server.gql(CREATE_API_KEY, variables, { token: user.token }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, field);
    }
    expectError(
      await server.gql(CREATE_API_KEY, { name: 'x', scopes: ['EVERYTHING'] }, { token: user.token }),
      'BAD_USER_INPUT',
    );
    assert.deepEqual(await tableCounts(server), before);
  });

  it('revokes a key: it stops working at once; revoking again is harmless', async () => {
    const user = await signUp(server);
    const { secret, apiKey } = await createApiKey(server, user.token, ['PREDICT']);
    const revoked = await server.gql(REVOKE, { id: apiKey.id }, { token: user.token });
    assert.ok(revoked.data!.revokeApiKey.revokedAt);
    expectError(await server.gql(ME, {}, { apiKey: secret }), 'UNAUTHENTICATED');
    const again = await server.gql(REVOKE, { id: apiKey.id }, { token: user.token });
    assert.equal(again.data!.revokeApiKey.revokedAt, revoked.data!.revokeApiKey.revokedAt);
  });

  it("never lets one user see or revoke another user's keys", async () => {
    const alice = await signUp(server);
    const mallory = await signUp(server);
    const { apiKey, secret } = await createApiKey(server, alice.token, ['PREDICT']);
    expectError(await server.gql(REVOKE, { id: apiKey.id }, { token: mallory.token }), 'NOT_FOUND');
    assert.deepEqual((await server.gql(MY_KEYS, {}, { token: mallory.token })).data!.myApiKeys, []);
    assert.equal((await server.gql(ME, {}, { apiKey: secret })).data!.me.id, alice.id);
    expectError(await server.gql(REVOKE, { id: 'not-a-uuid' }, { token: mallory.token }), 'BAD_USER_INPUT');
  });

  it('reports lastUsedAt without writing on every request, and persists it on flush', async () => {
    const user = await signUp(server);
    const { secret, apiKey } = await createApiKey(server, user.token, ['PREDICT']);
    const beforeUse = Date.now();
    await server.gql(ME, {}, { apiKey: secret });
    await sleep(5);
    await server.gql(ME, {}, { apiKey: secret });
    const stored = await server.sql.query('SELECT last_used_at FROM api_keys WHERE id = $1', [apiKey.id]);
    assert.equal(stored.rows[0].last_used_at, null, 'no write per request');
    const listed = (await server.gql(MY_KEYS, {}, { token: user.token })).data!.myApiKeys[0];
    assert.ok(Date.parse(listed.lastUsedAt) >= beforeUse);
    await server.app.services.apiKeys.flushUsage();
    const flushed = await server.sql.query('SELECT last_used_at FROM api_keys WHERE id = $1', [apiKey.id]);
    assert.equal(flushed.rows[0].last_used_at.toISOString(), listed.lastUsedAt);
  });

  it('requires a session to manage keys at all', async () => {
    expectError(await server.gql(MY_KEYS), 'UNAUTHENTICATED');
    expectError(await server.gql(CREATE_API_KEY, { name: 'x', scopes: ['PREDICT'] }), 'UNAUTHENTICATED');
  });
});
