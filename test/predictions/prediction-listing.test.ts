// The predictions list carries no outputs: a page of 100 predictions of up to PREDICT_MAX_OUTPUT_VALUES values each
// would be one response of tens of megabytes, built on the event loop. Outputs come from prediction(id).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';

const CREATE = `mutation Create($input: CreatePredictionInput!) { createPrediction(input: $input) { id } }`;
const GET = `query Get($id: ID!) { prediction(id: $id) { status outputs { values } } }`;
const ADMIN = { email: 'root@prediction-listing.test', password: 'an admin passphrase' };
const LIST_OUTPUTS = `{ predictions(first: 50) { edges { node { id ...Outputs } } } }
  fragment Outputs on AsyncPrediction { outputs { values } }`;

describe('predictions list and outputs', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  before(async () => {
    server = await startTestServer({
      JOBS_POLLING_INTERVAL_SECONDS: '1',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  it('refuses outputs selected in a page (BAD_USER_INPUT) and serves them from prediction(id)', async () => {
    const auth = { token: owner.token };
    const { slug } = (await publishedMlp(server, auth)).model;
    const ids: string[] = [];
    for (let seed = 0; seed < 2; seed++) {
      const res = await server.gql(CREATE, { input: { model: slug, inputs: randomRows(3, 784, seed) } }, auth);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      ids.push(res.data!.createPrediction.id);
    }
    for (const id of ids) {
      const prediction = await until(async () => {
        const current = (await server.gql(GET, { id }, auth)).data!.prediction;
        return current.status === 'SUCCEEDED' ? current : undefined;
      }, 60_000);
      assert.equal(prediction.outputs.length, 3);
    }
    const listed = await server.gql(LIST_OUTPUTS, {}, auth);
    assert.equal(expectError(listed, 'BAD_USER_INPUT').extensions?.field, 'outputs');
    for (const edge of listed.data?.predictions.edges ?? []) assert.equal(edge.node.outputs, null);

    // An admin may read another account's prediction and its outputs: audited, the owner's own reads not.
    const admin = { token: (await logIn(server, ADMIN.email, ADMIN.password)).token };
    const read = await server.gql(GET, { id: ids[0] }, admin);
    assert.equal(read.errors, undefined, JSON.stringify(read.errors));
    assert.equal(read.data!.prediction.outputs.length, 3);
    const { rows } = await server.sql.query(
      `SELECT a.actor_id, a.details FROM audit_events a WHERE a.action = 'admin.read' AND a.target_id = ANY($1)`,
      [ids],
    );
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.deepEqual(rows[0].details, { read: 'prediction', owner: owner.id });
  });
});
