import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, LOG_IN, logIn, signUp } from '../support/fixtures.js';

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

describe('audit log: admin queries and the hash chain', () => {
  let server: TestServer;
  const ADMIN = { email: 'admin@audit.test', password: 'audit admin phrase' };
  const EVENTS = `query E($f: AuditEventFilter, $first: Int, $after: String) { auditEvents(filter: $f, first: $first, after: $after) {
    edges { cursor node { chainSeq action actorId targetId prevHash hash details } } pageInfo { hasNextPage endCursor } } }`;
  const VERIFY =
    'query V($from: String, $to: String) { verifyAuditChain(from: $from, to: $to) { ok checked firstBrokenSeq reason } }';
  let admin: { token: string; id: string };

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    admin = await logIn(server, ADMIN.email, ADMIN.password);
  });
  after(() => server.close());

  it('lists events for admins only, newest first, filtered and paged', async () => {
    const user = await signUp(server);
    await createApiKey(server, user.token, ['PREDICT']);
    expectError(await server.gql(EVENTS, {}, { token: user.token }), 'FORBIDDEN');
    const page1 = (await server.gql(EVENTS, { first: 2 }, { token: admin.token })).data!.auditEvents;
    assert.equal(page1.edges.length, 2);
    assert.equal(page1.pageInfo.hasNextPage, true);
    const seqs = page1.edges.map((e: any) => Number(e.node.chainSeq));
    assert.ok(seqs[0] > seqs[1]);
    const page2 = (await server.gql(EVENTS, { first: 2, after: page1.pageInfo.endCursor }, { token: admin.token }))
      .data!.auditEvents;
    assert.ok(Number(page2.edges[0].node.chainSeq) < seqs[1]);
    const mine = (await server.gql(EVENTS, { f: { actor: user.id, action: 'api_key.*' } }, { token: admin.token }))
      .data!.auditEvents.edges;
    assert.deepEqual(
      mine.map((e: any) => e.node.action),
      ['api_key.created'],
    );
    const linked = (await server.gql(EVENTS, { first: 2 }, { token: admin.token })).data!.auditEvents.edges;
    assert.equal(linked[0].node.prevHash, linked[1].node.hash);
  });

  it('verifies the chain, and finds the first edited or removed event', async () => {
    for (let i = 0; i < 3; i++) await signUp(server);
    const clean = (await server.gql(VERIFY, {}, { token: admin.token })).data!.verifyAuditChain;
    assert.equal(clean.ok, true);
    assert.ok(clean.checked >= 4);
    const { rows } = await server.sql.query('SELECT chain_seq::text AS seq FROM audit_events ORDER BY chain_seq');
    const target = rows[Math.floor(rows.length / 2)].seq;
    // Tampering needs the table owner to switch the append-only trigger off first: what a rogue DBA would do.
    await server.sql.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete');
    try {
      await server.sql.query(`UPDATE audit_events SET details = '{"forged": true}' WHERE chain_seq = $1`, [target]);
      const edited = (await server.gql(VERIFY, {}, { token: admin.token })).data!.verifyAuditChain;
      assert.deepEqual(
        [edited.ok, edited.firstBrokenSeq, edited.reason],
        [false, target, 'event content does not match its hash'],
      );
      const before = (await server.gql(VERIFY, { to: String(Number(target) - 1) }, { token: admin.token })).data!
        .verifyAuditChain;
      assert.equal(before.ok, true);
      const last = rows.at(-1).seq;
      await server.sql.query('DELETE FROM audit_events WHERE chain_seq = $1', [String(Number(last) - 1)]);
      const removed = (await server.gql(VERIFY, { from: String(Number(target) + 1) }, { token: admin.token })).data!
        .verifyAuditChain;
      assert.deepEqual(
        [removed.ok, removed.firstBrokenSeq, removed.reason],
        [false, last, 'an event before it is missing'],
      );
    } finally {
      await server.sql.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete');
    }
    expectError(await server.gql(VERIFY, { from: 'x' }, { token: admin.token }), 'BAD_USER_INPUT');
  });
});
