// An alias move over thousands of contracts (one consumer may hold many on a model) over real HTTP: it succeeds, its
// consumers hear of it once each (one upgrade.available listing the consumer's contracts), and the move's audit row
// is written last, so the audit chain's global lock is held for the end of the transaction only. A model has at most
// MODEL_MAX_ACTIVE_PLANS active plans, which bounds one consumer's contracts on it (one live contract per plan).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, DIGITS, publish, publishedMlp, uploadWithTfjs } from '../support/models.js';
import { CREATE_PLAN, createPlan, PLAN_DEFAULTS } from '../support/licensing.js';

const SET_ALIAS = `mutation($m: String!, $a: String!, $v: String!) {
  setVersionAlias(model: $m, alias: $a, version: $v) { name version { version } } }`;
const ACCEPT = `mutation($planId: ID!) { acceptLicense(planId: $planId) { id } }`;
/** Enough contracts for the old per-contract fan-out (quadratic, one event each) to fail. */
const CONTRACTS = 4_000;

describe('alias move over many contracts', () => {
  let server: TestServer;
  let owner: SignedUpUser;

  before(async () => {
    server = await startTestServer({ MODEL_MAX_ACTIVE_PLANS: '2' });
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  const gql = async (query: string, variables: Record<string, unknown>, user: SignedUpUser) => {
    const res = await server.gql(query, variables, { token: user.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!;
  };

  it('offers the new version to thousands of pinned contracts with one event per consumer', async () => {
    const { model } = await publishedMlp(server, { token: owner.token }, { sizes: [8, 4, 2] });
    const artifact = await uploadWithTfjs(server, buildMlp([8, 4, 2], 12), { token: owner.token });
    const next = await publish(
      server,
      { token: owner.token },
      { model: model.slug, version: '1.1.0', artifactId: artifact.id, labels: DIGITS.slice(0, 2) },
    );
    await gql(SET_ALIAS, { m: model.slug, a: 'stable', v: '1.0.0' }, owner);
    const pinnedPlan = await createPlan(server, { token: owner.token }, model.slug);
    const followPlan = await createPlan(server, { token: owner.token }, model.slug, { upgradePolicy: 'FOLLOW_ALIAS' });
    const holder = await signUp(server);
    const held = (await gql(ACCEPT, { planId: pinnedPlan.id }, holder)).acceptLicense.id as string;
    const follower = await signUp(server);
    const follows = (await gql(ACCEPT, { planId: followPlan.id }, follower)).acceptLicense.id as string;
    // The holder's contract, cloned in SQL: one consumer with thousands of PINNED contracts on the model.
    const columns = await server.sql.query<{ list: string }>(
      `SELECT string_agg(quote_ident(column_name), ',') AS list FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name = 'contracts' AND column_name <> 'id'`,
    );
    const list = columns.rows[0]!.list;
    await server.sql.query(
      `INSERT INTO contracts (id, ${list}) SELECT gen_random_uuid(), ${list} FROM contracts, generate_series(2, $2)
       WHERE id = $1`,
      [held, CONTRACTS],
    );
    const before = await server.sql.query<{ seq: string }>('SELECT max(chain_seq)::text AS seq FROM audit_events');

    await gql(SET_ALIAS, { m: model.slug, a: 'stable', v: '1.1.0' }, owner);

    const pending = await server.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM contracts WHERE consumer_id = $1 AND pending_version_id = $2',
      [holder.id, next.id],
    );
    assert.equal(pending.rows[0]!.n, CONTRACTS, 'every pinned contract is offered the new version');
    const followed = await server.sql.query('SELECT 1 FROM contracts WHERE id = $1 AND pinned_version_id = $2', [
      follows,
      next.id,
    ]);
    assert.equal(followed.rowCount, 1, 'the FOLLOW_ALIAS contract moved');

    const events = await server.sql.query<{ account_id: string; type: string; data: any }>(
      `SELECT account_id, type, data FROM events WHERE data->>'alias' = 'stable' AND data->>'to' = '1.1.0'
       ORDER BY type`,
    );
    assert.deepEqual(
      events.rows.map((e) => [e.account_id, e.type]).sort(),
      [
        [holder.id, 'alias.moved'],
        [holder.id, 'upgrade.available'],
        [follower.id, 'alias.moved'],
      ].sort(),
      'one event of each kind per consumer',
    );
    const offer = events.rows.find((e) => e.type === 'upgrade.available')!.data;
    assert.equal(offer.contracts.length, CONTRACTS);
    assert.ok(offer.contracts.some((c: { contract: string }) => c.contract === held));
    assert.deepEqual(offer.contracts[0], { contract: offer.contracts[0].contract, from: '1.0.0', appliesAt: null });
    assert.deepEqual(Object.keys(offer.comparisons), ['1.0.0']);
    assert.equal(offer.comparisons['1.0.0'].breaking, false);

    // The move's audit row is the transaction's last: the chain's global lock is taken at the end.
    const audits = await server.sql.query<{ action: string }>(
      'SELECT action FROM audit_events WHERE chain_seq > $1 ORDER BY chain_seq',
      [before.rows[0]!.seq],
    );
    assert.equal(audits.rows.length, CONTRACTS + 2);
    assert.equal(audits.rows.at(-1)!.action, 'model_alias.set');
    assert.equal(audits.rows.filter((a) => a.action === 'contract.upgrade_offered').length, CONTRACTS);
  });

  it('refuses a plan beyond MODEL_MAX_ACTIVE_PLANS active ones on a model, until one is retired', async () => {
    const { model } = await publishedMlp(server, { token: owner.token }, { sizes: [8, 4, 2] });
    const first = await createPlan(server, { token: owner.token }, model.slug);
    await createPlan(server, { token: owner.token }, model.slug);
    const plan = { input: { ...PLAN_DEFAULTS, model: model.slug } };
    expectError(await server.gql(CREATE_PLAN, plan, { token: owner.token }), 'BAD_USER_INPUT');
    await gql('mutation($id: ID!) { retireLicensePlan(id: $id) { status } }', { id: first.id }, owner);
    await createPlan(server, { token: owner.token }, model.slug);
  });
});
