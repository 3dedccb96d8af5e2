// The admin console's lists: accounts (search, role, pages), the caller's API keys as a connection, and who
// acted in the audit log (AuditEvent.actor).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type GraphQLResponse, type TestServer } from '../support/server.js';
import { createApiKey, expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';

const ADMIN = { email: 'admin@directory.test', password: 'directory admin phrase' };
const USERS = `query U($filter: UserFilter, $first: Int, $after: String) { users(filter: $filter, first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { node { id email role } } } }`;
const KEYS = `query K($includeRevoked: Boolean, $first: Int, $after: String) {
  myApiKeysConnection(includeRevoked: $includeRevoked, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id name revokedAt } } } }`;

describe('users, API keys and audit actors for the console', () => {
  let server: TestServer;
  let admin: SignedUpUser;

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    admin = await logIn(server, ADMIN.email, ADMIN.password);
  });
  after(() => server.close());

  const data = async (res: Promise<{ data?: any; errors?: unknown }>) => {
    const answer = await res;
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    return answer.data;
  };

  it('lists accounts newest first for admins, searched and filtered by role', async () => {
    const owner = await signUp(server, { role: 'OWNER', email: 'Zelda.Owner@directory.test' });
    const consumer = await signUp(server, { email: 'zed.consumer@directory.test' });
    const all = (await data(server.gql(USERS, { first: 2 }, { token: admin.token }))).users;
    assert.equal(all.totalCount, 3);
    assert.deepEqual(
      all.edges.map((e: any) => e.node.id),
      [consumer.id, owner.id],
    );
    const rest = (await data(server.gql(USERS, { first: 2, after: all.pageInfo.endCursor }, { token: admin.token })))
      .users;
    assert.deepEqual(
      rest.edges.map((e: any) => e.node.email),
      [ADMIN.email],
    );
    const search = (await data(server.gql(USERS, { filter: { search: 'ZELDA' } }, { token: admin.token }))).users;
    assert.deepEqual(
      search.edges.map((e: any) => e.node.id),
      [owner.id],
    );
    const owners = (await data(server.gql(USERS, { filter: { role: 'OWNER' } }, { token: admin.token }))).users;
    assert.equal(owners.totalCount, 1);
    // The console changes a role with setUserRole; the list shows it.
    await data(
      server.gql(
        `mutation R($u: ID!) { setUserRole(userId: $u, role: OWNER) { id } }`,
        { u: consumer.id },
        { token: admin.token },
      ),
    );
    assert.equal(
      (await data(server.gql(USERS, { filter: { role: 'OWNER' } }, { token: admin.token }))).users.totalCount,
      2,
    );

    const field = (res: GraphQLResponse) => expectError(res, 'BAD_USER_INPUT').extensions!.field;
    assert.equal(
      field(await server.gql(USERS, { filter: { search: 'x'.repeat(201) } }, { token: admin.token })),
      'filter.search',
    );
    assert.equal(field(await server.gql(USERS, { first: 101 }, { token: admin.token })), 'first');
    assert.equal(field(await server.gql(USERS, { after: 'nope' }, { token: admin.token })), 'after');
    expectError(await server.gql(USERS, {}, { token: owner.token }), 'FORBIDDEN');
  });

  it('pages the caller’s API keys, revoked ones only when asked', async () => {
    const user = await signUp(server);
    const keys = [];
    for (const name of ['one', 'two', 'three'])
      keys.push((await createApiKey(server, user.token, ['PREDICT'], name)).apiKey);
    await data(
      server.gql(`mutation R($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: keys[0]!.id }, { token: user.token }),
    );
    const page = (await data(server.gql(KEYS, { first: 2 }, { token: user.token }))).myApiKeysConnection;
    assert.equal(page.totalCount, 3);
    assert.deepEqual(
      page.edges.map((e: any) => e.node.name),
      ['three', 'two'],
    );
    const rest = (await data(server.gql(KEYS, { first: 2, after: page.pageInfo.endCursor }, { token: user.token })))
      .myApiKeysConnection;
    assert.deepEqual(
      rest.edges.map((e: any) => e.node.name),
      ['one'],
    );
    assert.ok(rest.edges[0].node.revokedAt);
    const live = (await data(server.gql(KEYS, { includeRevoked: false }, { token: user.token }))).myApiKeysConnection;
    assert.equal(live.totalCount, 2);
    expectError(await server.gql(KEYS, { first: 0 }, { token: user.token }), 'BAD_USER_INPUT');
    // Another account's keys are not listed.
    const other = await signUp(server);
    assert.equal((await data(server.gql(KEYS, {}, { token: other.token }))).myApiKeysConnection.totalCount, 0);
  });

  it('links audit events to the account that acted', async () => {
    const user = await signUp(server);
    await createApiKey(server, user.token, ['PREDICT'], 'audited');
    const events = (
      await data(
        server.gql(
          `{ auditEvents(filter: { action: "api_key.*" }, first: 50) { edges { node { action actorId actor { id email } } } } }`,
          {},
          { token: admin.token },
        ),
      )
    ).auditEvents.edges.map((e: any) => e.node);
    const created = events.find((event: any) => event.actorId === user.id);
    assert.ok(created, JSON.stringify(events));
    assert.deepEqual(created.actor, { id: user.id, email: user.email });
  });
});
