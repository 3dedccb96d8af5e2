// Contract and plan connections: keyset pages newest first (plans oldest first), totalCount, filters, the old
// visibility rules, and edges read in batches (a page of N models costs the same queries as a page of 2).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { createModel } from '../support/models.js';
import { accept, createPlan, transition } from '../support/licensing.js';

const ADMIN = { email: 'admin@connections.test', password: 'connections admin phrase' };
const MINE = `query Mine($filter: ContractFilter, $first: Int, $after: String) {
  myContractsConnection(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id status } } } }`;

describe('contract and plan connections', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let consumer: SignedUpUser;
  let admin: SignedUpUser;
  let slugs: string[];
  /** The consumer's contracts, newest first. */
  let contracts: string[];

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    consumer = await signUp(server);
    admin = await logIn(server, ADMIN.email, ADMIN.password);
    slugs = [];
    contracts = [];
    for (let i = 0; i < 5; i++) {
      const { slug } = await createModel(server, { token: owner.token });
      slugs.push(slug);
      const plan = await createPlan(server, { token: owner.token }, slug, { name: `Plan ${i}` });
      await createPlan(server, { token: owner.token }, slug, { name: `Gated ${i}`, requiresApproval: true });
      contracts.unshift((await accept(server, { token: consumer.token }, plan.id)).id);
    }
    await transition(server, { token: owner.token }, 'suspendContract', contracts[0]!, 'check');
  });
  after(() => server.close());

  const data = async (res: Promise<{ data?: any; errors?: unknown }>) => {
    const answer = await res;
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    return answer.data;
  };

  it('pages the caller’s contracts newest first, with totalCount and filters', async () => {
    const first = (await data(server.gql(MINE, { first: 2 }, { token: consumer.token }))).myContractsConnection;
    assert.equal(first.totalCount, 5);
    assert.deepEqual(
      first.edges.map((e: any) => e.node.id),
      contracts.slice(0, 2),
    );
    assert.equal(first.pageInfo.hasNextPage, true);
    const rest = (
      await data(server.gql(MINE, { first: 10, after: first.pageInfo.endCursor }, { token: consumer.token }))
    ).myContractsConnection;
    assert.deepEqual(
      rest.edges.map((e: any) => e.node.id),
      contracts.slice(2),
    );
    assert.equal(rest.pageInfo.hasNextPage, false);
    assert.equal(rest.totalCount, 5);

    const suspended = (await data(server.gql(MINE, { filter: { status: 'SUSPENDED' } }, { token: consumer.token })))
      .myContractsConnection;
    assert.deepEqual(
      suspended.edges.map((e: any) => e.node.id),
      [contracts[0]],
    );
    assert.equal(suspended.totalCount, 1);
    const byModel = (await data(server.gql(MINE, { filter: { model: slugs[0] } }, { token: consumer.token })))
      .myContractsConnection;
    assert.deepEqual(
      byModel.edges.map((e: any) => e.node.id),
      [contracts[4]],
    );
    const unknown = (await data(server.gql(MINE, { filter: { model: 'no-such-model' } }, { token: consumer.token })))
      .myContractsConnection;
    assert.equal(unknown.totalCount, 0);
    // Others' contracts are not the caller's.
    const stranger = await signUp(server);
    assert.equal((await data(server.gql(MINE, {}, { token: stranger.token }))).myContractsConnection.totalCount, 0);
  });

  it('refuses page sizes out of 1..100 and cursors it did not issue', async () => {
    for (const first of [0, 101, -1]) {
      assert.equal(
        expectError(await server.gql(MINE, { first }, { token: consumer.token }), 'BAD_USER_INPUT').extensions!.field,
        'first',
      );
    }
    for (const cursor of ['garbage', Buffer.from('{"createdAt":"x","id":"y"}').toString('base64url')]) {
      assert.equal(
        expectError(await server.gql(MINE, { after: cursor }, { token: consumer.token }), 'BAD_USER_INPUT').extensions!
          .field,
        'after',
      );
    }
    // A stranger's filter: too long, or text PostgreSQL cannot store, is the caller's error; the next call still works.
    // NUL is refused before any resolver runs, naming the variable; a slug past 100 characters by the listing.
    for (const [model, field] of [
      ['m'.repeat(101), 'filter.model'],
      ['digits\u0000', 'variables.filter.model'],
    ]) {
      const refused = expectError(
        await server.gql(MINE, { filter: { model } }, { token: consumer.token }),
        'BAD_USER_INPUT',
      );
      assert.equal(refused.extensions!.field, field);
    }
    assert.equal((await data(server.gql(MINE, {}, { token: consumer.token }))).myContractsConnection.totalCount, 5);
  });

  it('keeps the old rules: a model’s contracts for its manager, every contract for admins', async () => {
    const FOR_MODEL = `query F($m: String!) { contractsForModelConnection(model: $m) { totalCount edges { node { id } } } }`;
    const mine = (await data(server.gql(FOR_MODEL, { m: slugs[1] }, { token: owner.token })))
      .contractsForModelConnection;
    assert.deepEqual(mine, { totalCount: 1, edges: [{ node: { id: contracts[3] } }] });
    const other = await signUp(server, { role: 'OWNER' });
    expectError(await server.gql(FOR_MODEL, { m: slugs[1] }, { token: other.token }), 'NOT_FOUND');
    const asAdmin = (await data(server.gql(FOR_MODEL, { m: slugs[1] }, { token: admin.token })))
      .contractsForModelConnection;
    assert.equal(asAdmin.totalCount, 1);

    const ALL = `query A($f: ContractFilter) { contractsConnection(filter: $f, first: 3) { totalCount edges { node { id } } } }`;
    const all = (await data(server.gql(ALL, {}, { token: admin.token }))).contractsConnection;
    assert.equal(all.totalCount, 5);
    assert.equal(all.edges.length, 3);
    const active = (await data(server.gql(ALL, { f: { status: 'ACTIVE' } }, { token: admin.token })))
      .contractsConnection;
    assert.equal(active.totalCount, 4);
    expectError(await server.gql(ALL, {}, { token: owner.token }), 'FORBIDDEN');
  });

  it('pages a model’s plans oldest first; retired ones only for its manager', async () => {
    const PLANS = `query P($m: String!, $first: Int, $after: String, $status: PlanStatus) { model(slug: $m) {
      plansConnection(first: $first, after: $after, status: $status) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { name status } } } } }`;
    const extra = await createPlan(server, { token: owner.token }, slugs[2]!, { name: 'Old' });
    await data(
      server.gql(
        `mutation R($id: ID!) { retireLicensePlan(id: $id) { id } }`,
        { id: extra.id },
        { token: owner.token },
      ),
    );
    const page = (await data(server.gql(PLANS, { m: slugs[2], first: 2 }, { token: owner.token }))).model
      .plansConnection;
    assert.equal(page.totalCount, 3);
    assert.deepEqual(
      page.edges.map((e: any) => e.node.name),
      ['Plan 2', 'Gated 2'],
    );
    const next = (
      await data(server.gql(PLANS, { m: slugs[2], first: 2, after: page.pageInfo.endCursor }, { token: owner.token }))
    ).model.plansConnection;
    assert.deepEqual(next.edges, [{ node: { name: 'Old', status: 'RETIRED' } }]);
    assert.equal(next.pageInfo.hasNextPage, false);
    const asConsumer = (await data(server.gql(PLANS, { m: slugs[2] }, { token: consumer.token }))).model
      .plansConnection;
    assert.equal(asConsumer.totalCount, 2);
    const retiredToConsumer = (
      await data(server.gql(PLANS, { m: slugs[2], status: 'RETIRED' }, { token: consumer.token }))
    ).model.plansConnection;
    assert.equal(retiredToConsumer.totalCount, 0);
    expectError(await server.gql(PLANS, { m: slugs[2], first: 101 }, { token: owner.token }), 'BAD_USER_INPUT');
  });

  it('reads the edges of a page in batches: 5 models cost the queries of 2', async () => {
    const PAGE = `query Page($first: Int) { models(first: $first) { edges { node {
      slug viewerCanPredict viewerContract { id viewerActions plan { name } model { slug } consumer { id } }
      plansConnection { totalCount edges { node { name viewerCanAccept } } } } } } }`;
    const statements = await countStatements(async () => {
      const page = (await data(server.gql(PAGE, { first: 2 }, { token: consumer.token }))).models;
      assert.equal(page.edges.length, 2);
    });
    const more = await countStatements(async () => {
      const page = (await data(server.gql(PAGE, { first: 5 }, { token: consumer.token }))).models;
      assert.equal(page.edges.length, 5);
      for (const { node } of page.edges) {
        assert.equal(node.viewerContract.model.slug, node.slug);
        assert.equal(node.plansConnection.totalCount, 2);
      }
    });
    assert.ok(statements > 0);
    assert.equal(more, statements, `5 models took ${more} statements on licensing tables, 2 took ${statements}`);
  });
});

/** Statements on the licensing tables (contracts, plans, versions) this process sent while `run` ran. */
async function countStatements(run: () => Promise<void>): Promise<number> {
  const original = pg.Client.prototype.query;
  let count = 0;
  // A spy, not a stub: every statement still goes to PostgreSQL.
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0] as string | { text?: string };
    const text = typeof first === 'string' ? first : (first?.text ?? '');
    if (/\b(contracts|license_plans|model_versions)\b/.test(text)) count++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  try {
    await run();
  } finally {
    pg.Client.prototype.query = original;
  }
  return count;
}
