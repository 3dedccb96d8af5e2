// The capability fields (Contract.viewerActions, Model.viewerCanPredict, LicensePlan.viewerCanAccept,
// Model.viewerContract) against what the calls they announce really do, for every contract state and viewer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { accept, createPlan, transition } from '../support/licensing.js';

const ADMIN = { email: 'admin@capabilities.test', password: 'capabilities admin phrase' };
const STATES = ['PENDING', 'ACTIVE', 'SUSPENDED', 'REVOKED', 'REJECTED', 'CANCELLED', 'EXPIRED'] as const;
type State = (typeof STATES)[number];
const ACTIONS = ['APPROVE', 'REJECT', 'SUSPEND', 'RESUME', 'REVOKE', 'CANCEL'] as const;
type Action = (typeof ACTIONS)[number];
const REASONED = new Set<Action>(['REJECT', 'SUSPEND', 'REVOKE']);

describe('capability fields agree with the calls', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let otherOwner: SignedUpUser;
  let admin: SignedUpUser;
  let slug: string;
  let openPlan: string;
  let approvalPlan: string;
  const rows = randomRows(1, 784, 3);

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    otherOwner = await signUp(server, { role: 'OWNER' });
    admin = await logIn(server, ADMIN.email, ADMIN.password);
    slug = (await publishedMlp(server, { token: owner.token })).model.slug;
    openPlan = (await createPlan(server, { token: owner.token }, slug, { name: 'Open' })).id;
    approvalPlan = (await createPlan(server, { token: owner.token }, slug, { name: 'Gated', requiresApproval: true }))
      .id;
  });
  after(() => server.close());

  const ok = async (res: Promise<{ data?: any; errors?: unknown }>) => {
    const answer = await res;
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    return answer.data;
  };

  /** A fresh consumer's contract in `state`. */
  async function contractIn(state: State) {
    const consumer = await signUp(server);
    const { id } = await accept(
      server,
      { token: consumer.token },
      state === 'PENDING' || state === 'REJECTED' ? approvalPlan : openPlan,
    );
    const by = { token: owner.token };
    if (state === 'SUSPENDED') await ok(transition(server, by, 'suspendContract', id, 'paused'));
    if (state === 'REVOKED') await ok(transition(server, by, 'revokeContract', id, 'ended'));
    if (state === 'REJECTED') await ok(transition(server, by, 'rejectContract', id, 'no'));
    if (state === 'CANCELLED') await ok(transition(server, { token: consumer.token }, 'cancelContract', id));
    if (state === 'EXPIRED')
      await server.sql.query(`UPDATE contracts SET expires_at = now() - interval '1 minute' WHERE id = $1`, [id]);
    return { id, consumer };
  }

  const mutationOf = (action: Action) => `${action.toLowerCase()}Contract`;

  async function attempt(viewer: SignedUpUser, action: Action, id: string) {
    return transition(
      server,
      { token: viewer.token },
      mutationOf(action),
      id,
      REASONED.has(action) ? 'a reason' : undefined,
    );
  }

  /** viewerActions as the viewer reads them: consumers through their contracts, managers through the model's. */
  async function actionsAs(viewer: SignedUpUser, id: string, asConsumer: boolean): Promise<Action[]> {
    const query = asConsumer
      ? `{ myContractsConnection(first: 100) { edges { node { id status viewerActions } } } }`
      : `query C($m: String!) { contractsForModelConnection(model: $m, first: 100) { edges { node { id viewerActions } } } }`;
    const data = await ok(server.gql(query, { m: slug }, { token: viewer.token }));
    const connection = asConsumer ? data.myContractsConnection : data.contractsForModelConnection;
    const node = connection.edges.map((edge: any) => edge.node).find((c: any) => c.id === id);
    assert.ok(node, `contract ${id} listed`);
    return node.viewerActions;
  }

  const statusOf = async (id: string) =>
    (await server.sql.query(`SELECT status FROM contracts WHERE id = $1`, [id])).rows[0].status as string;

  it('viewerActions lists exactly the transitions that succeed, for each state and viewer', async () => {
    for (const state of STATES) {
      const base = await contractIn(state);
      const viewers: [string, SignedUpUser, Action[] | null][] = [
        ['consumer', base.consumer, await actionsAs(base.consumer, base.id, true)],
        ['owner', owner, await actionsAs(owner, base.id, false)],
        ['admin', admin, await actionsAs(admin, base.id, false)],
        // Another owner sees no such contract: nothing to announce, and every call is refused.
        ['other owner', otherOwner, null],
      ];
      expectError(
        await server.gql(
          `query C($m: String!) { contractsForModelConnection(model: $m) { totalCount } }`,
          { m: slug },
          {
            token: otherOwner.token,
          },
        ),
        'NOT_FOUND',
      );
      for (const [who, viewer, announced] of viewers) {
        for (const action of ACTIONS) {
          const allowed = announced?.includes(action) ?? false;
          const before = await statusOf(base.id);
          if (!allowed) {
            const res = await attempt(viewer, action, base.id);
            assert.ok(res.errors?.length, `${who} ${action} on ${state} should be refused`);
            assert.equal(await statusOf(base.id), before, `${who} ${action} on ${state} changed nothing`);
            continue;
          }
          const fresh = await contractIn(state);
          const res = await attempt(viewer === base.consumer ? fresh.consumer : viewer, action, fresh.id);
          assert.equal(res.errors, undefined, `${who} ${action} on ${state}: ${JSON.stringify(res.errors)}`);
        }
      }
    }
  });

  it('an API key announces no contract actions: the mutations need a user session', async () => {
    const { id, consumer } = await contractIn('ACTIVE');
    const { secret } = await createApiKey(server, consumer.token, ['PREDICT']);
    // An API key reaches its contract through the prediction it billed.
    const data = await ok(
      server.gql(
        `mutation P($input: PredictInput!) { predict(input: $input) { contract { id viewerActions } } }`,
        { input: { model: slug, inputs: rows } },
        { apiKey: secret },
      ),
    );
    assert.deepEqual(data.predict.contract, { id, viewerActions: [] });
    expectError(await transition(server, { apiKey: secret }, 'cancelContract', id), 'FORBIDDEN');
    assert.equal(await statusOf(id), 'ACTIVE');
  });

  const MODEL_CAPS = `query M($m: String!) { model(slug: $m) {
    viewerCanPredict viewerContract { id status }
    plansConnection { totalCount edges { node { id viewerCanAccept } } } } }`;

  async function capsAs(auth: { token?: string; apiKey?: string }) {
    const data = await ok(server.gql(MODEL_CAPS, { m: slug }, auth));
    const accepts = Object.fromEntries(
      data.model.plansConnection.edges.map((edge: any) => [edge.node.id, edge.node.viewerCanAccept]),
    );
    return { canPredict: data.model.viewerCanPredict as boolean, contract: data.model.viewerContract, accepts };
  }

  const predicts = async (auth: { token?: string; apiKey?: string }) =>
    (await server.gql(PREDICT, { input: { model: slug, inputs: rows } }, auth)).errors === undefined;

  it('viewerCanPredict and viewerCanAccept agree with predict and acceptLicense', async () => {
    // Managers predict without a contract; anonymous callers and strangers cannot.
    for (const [auth, expected] of [
      [{ token: owner.token }, true],
      [{ token: admin.token }, true],
      [{}, false],
      [{ token: otherOwner.token }, false],
    ] as const) {
      const caps = await capsAs(auth);
      assert.equal(caps.canPredict, expected);
      assert.equal(await predicts(auth), expected);
    }
    assert.deepEqual((await capsAs({})).accepts, { [openPlan]: false, [approvalPlan]: false });
    assert.deepEqual((await capsAs({ token: owner.token })).accepts, { [openPlan]: false, [approvalPlan]: false });
    expectError(
      await server.gql(
        `mutation A($p: ID!) { acceptLicense(planId: $p) { id } }`,
        { p: openPlan },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );

    const consumer = await signUp(server);
    const as = { token: consumer.token };
    let caps = await capsAs(as);
    assert.deepEqual(caps, { canPredict: false, contract: null, accepts: { [openPlan]: true, [approvalPlan]: true } });
    assert.equal(await predicts(as), false);

    // Requested: PENDING is the contract that matters, calls still refused, that plan no longer acceptable.
    const pending = await accept(server, as, approvalPlan);
    caps = await capsAs(as);
    assert.deepEqual(caps.contract, { id: pending.id, status: 'PENDING' });
    assert.equal(caps.canPredict, false);
    assert.equal(await predicts(as), false);
    assert.deepEqual(caps.accepts, { [openPlan]: true, [approvalPlan]: false });
    expectError(
      await server.gql(`mutation A($p: ID!) { acceptLicense(planId: $p) { id } }`, { p: approvalPlan }, as),
      'CONFLICT',
    );

    // Approved: it predicts, and the ACTIVE contract is the one shown.
    await ok(transition(server, { token: owner.token }, 'approveContract', pending.id));
    caps = await capsAs(as);
    assert.deepEqual(caps.contract, { id: pending.id, status: 'ACTIVE' });
    assert.equal(caps.canPredict, true);
    assert.equal(await predicts(as), true);

    // An API key without the PREDICT scope cannot call predict, so it is not told it can.
    const { secret } = await createApiKey(server, consumer.token, ['READ_USAGE']);
    assert.equal((await capsAs({ apiKey: secret })).canPredict, false);
    assert.equal(await predicts({ apiKey: secret }), false);

    // Suspended, then expired: no longer.
    await ok(transition(server, { token: owner.token }, 'suspendContract', pending.id, 'audit'));
    caps = await capsAs(as);
    assert.deepEqual(caps.contract, { id: pending.id, status: 'SUSPENDED' });
    assert.equal(caps.canPredict, false);
    assert.equal(await predicts(as), false);
    await ok(transition(server, { token: owner.token }, 'resumeContract', pending.id));
    assert.equal((await capsAs(as)).canPredict, true);
    await server.sql.query(`UPDATE contracts SET expires_at = now() - interval '1 minute' WHERE id = $1`, [pending.id]);
    assert.equal((await capsAs(as)).canPredict, false);
    assert.equal(await predicts(as), false);
  });

  it('viewerCanPredict is false for a contract that covers no serving version', async () => {
    const narrow = await createPlan(server, { token: owner.token }, slug, { name: 'Future', versions: '^9.0.0' });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, narrow.id);
    assert.equal((await capsAs({ token: consumer.token })).canPredict, false);
    assert.equal(await predicts({ token: consumer.token }), false);
  });

  it('a prediction links its billed contract and the quota units it took', async () => {
    const { id, consumer } = await contractIn('ACTIVE');
    const query = `mutation P($input: PredictInput!) { predict(input: $input) { quotaUnits contract { id predictionsUsed } } }`;
    const input = { model: slug, inputs: randomRows(3, 784, 9) };
    const billed = await ok(server.gql(query, { input }, { token: consumer.token }));
    assert.deepEqual(billed.predict, { quotaUnits: 3, contract: { id, predictionsUsed: 3 } });
    const free = await ok(server.gql(query, { input }, { token: owner.token }));
    assert.deepEqual(free.predict, { quotaUnits: 0, contract: null });
  });
});
