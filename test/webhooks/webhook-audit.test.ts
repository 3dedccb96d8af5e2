// Webhook URLs are often capabilities (a Slack hook's path is its key): the append-only audit log keeps the origin
// and a SHA-256 of the whole URL, never the URL itself.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { signUp } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';

const CREATE = `mutation C($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }`;
const UPDATE = `mutation U($id: ID!, $input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(id: $id, input: $input) { id } }`;
const DELETE = `mutation D($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }`;

describe('webhook URLs in the audit log', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('audits the origin and a SHA-256 of an endpoint URL, never the URL', async () => {
    const account = await signUp(server);
    const auth = { token: account.token };
    const first = 'https://hooks.example.com/services/T000/B000/first-capability-secret';
    const second = 'https://hooks.example.com/services/T000/B000/second-capability-secret';
    const created = await server.gql(CREATE, { input: { url: first, events: ['ALIAS_MOVED'] } }, auth);
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    const id = created.data!.createWebhookEndpoint.endpoint.id;
    for (const [query, variables] of [
      [UPDATE, { id, input: { url: second, description: 'moved' } }],
      [DELETE, { id }],
    ] as const) {
      const res = await server.gql(query, variables, auth);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
    const { rows } = await server.sql.query(
      `SELECT action, details FROM audit_events WHERE target_id = $1 ORDER BY id`,
      [id],
    );
    const sha256 = (url: string) => createHash('sha256').update(url).digest('hex');
    assert.deepEqual(
      rows.map((row) => [row.action, row.details.urlOrigin, row.details.urlSha256]),
      [
        ['webhook_endpoint.created', 'https://hooks.example.com', sha256(first)],
        ['webhook_endpoint.updated', 'https://hooks.example.com', sha256(second)],
        ['webhook_endpoint.deleted', 'https://hooks.example.com', sha256(second)],
      ],
    );
    assert.doesNotMatch(JSON.stringify(rows), /capability-secret/);
  });
});
