import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { AUTH_FIELDS, expectError, signUp } from '../support/fixtures.js';

const REFRESH = `mutation Refresh($t: String!) { refreshSession(refreshToken: $t) { ${AUTH_FIELDS} } }`;
const LOG_OUT = 'mutation LogOut($t: String!) { logOut(refreshToken: $t) }';
const ME = '{ me { id } }';

describe('sessions: refresh-token rotation, re-use detection, log-out', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('rotates the refresh token on every use and stores only hashes', async () => {
    const user = await signUp(server);
    const first = await server.gql(REFRESH, { t: user.refreshToken });
    assert.equal(first.errors, undefined);
    const rotated = first.data!.refreshSession;
    assert.notEqual(rotated.refreshToken, user.refreshToken);
    assert.equal(rotated.user.id, user.id);
    const me = await server.gql(ME, {}, { token: rotated.accessToken });
    assert.equal(me.data!.me.id, user.id);
    const second = await server.gql(REFRESH, { t: rotated.refreshToken });
    assert.equal(second.errors, undefined);
    const { rows } = await server.sql.query(
      `SELECT rt.token_hash FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE s.user_id = $1`,
      [user.id],
    );
    assert.equal(rows.length, 3);
    for (const { token_hash } of rows) {
      assert.match(token_hash, /^[0-9a-f]{64}$/);
      assert.ok(![user.refreshToken, rotated.refreshToken].includes(token_hash));
    }
  });

  it('revokes the whole session family when a spent refresh token is re-used', async () => {
    const user = await signUp(server);
    const rotated = (await server.gql(REFRESH, { t: user.refreshToken })).data!.refreshSession;
    // The attacker (or a stale client) presents the spent token.
    expectError(await server.gql(REFRESH, { t: user.refreshToken }), 'UNAUTHENTICATED');
    // Everything issued in that session is now dead: the newest refresh token and the access tokens.
    expectError(await server.gql(REFRESH, { t: rotated.refreshToken }), 'UNAUTHENTICATED');
    const me = await server.gql(ME, {}, { token: rotated.accessToken });
    expectError(me, 'UNAUTHENTICATED');
    assert.equal(me.status, 401);
    const { rows } = await server.sql.query(
      `SELECT action FROM audit_events WHERE actor_id = $1 AND action = 'auth.refresh_token_reused'`,
      [user.id],
    );
    assert.equal(rows.length, 1);
  });

  it('lets exactly one of two concurrent uses of a refresh token win', async () => {
    const user = await signUp(server);
    const results = await Promise.all([
      server.gql(REFRESH, { t: user.refreshToken }),
      server.gql(REFRESH, { t: user.refreshToken }),
    ]);
    const wins = results.filter((r) => !r.errors);
    assert.ok(wins.length <= 1, 'a refresh token must never be spent twice');
    assert.ok(results.some((r) => r.errors?.[0]?.extensions?.code === 'UNAUTHENTICATED'));
  });

  it('keeps other sessions of the same user alive', async () => {
    const user = await signUp(server);
    const other = await signUp(server, { email: `other-${user.email}` });
    expectError(await server.gql(REFRESH, { t: 'mmr_not-a-real-token' }), 'UNAUTHENTICATED');
    const rotated = await server.gql(REFRESH, { t: other.refreshToken });
    assert.equal(rotated.errors, undefined);
  });

  it('logs out: the session ends, its refresh and access tokens stop working', async () => {
    const user = await signUp(server);
    const out = await server.gql(LOG_OUT, { t: user.refreshToken });
    assert.equal(out.data!.logOut, true);
    expectError(await server.gql(REFRESH, { t: user.refreshToken }), 'UNAUTHENTICATED');
    expectError(await server.gql(ME, {}, { token: user.token }), 'UNAUTHENTICATED');
    const again = await server.gql(LOG_OUT, { t: user.refreshToken });
    assert.equal(again.data!.logOut, false);
    const unknown = await server.gql(LOG_OUT, { t: 'mmr_unknown' });
    assert.equal(unknown.data!.logOut, false);
  });
});
