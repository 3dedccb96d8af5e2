// Consumer-accepted version upgrades over real HTTP: a contract pinned to an alias keeps its version when the alias
// moves (PINNED) until its consumer accepts, follows at once (FOLLOW_ALIAS), or takes a compatible upgrade when its
// grace period ends (FOLLOW_ALIAS_AFTER_GRACE), never a breaking one; each move writes its events (outbox rows).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { explained } from '../explanations/support.js';
import { datasetId } from '../evaluation/support.js';
import { createBatch, inputsJsonl } from '../predictions/batch-support.js';
import { authHeaders, startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, DIGITS, PREDICT, publish, publishedMlp, uploadWithTfjs } from '../support/models.js';
import { CREATE_PLAN, createPlan, PLAN_DEFAULTS } from '../support/licensing.js';

const SET_ALIAS = `mutation($m: String!, $a: String!, $v: String!) {
  setVersionAlias(model: $m, alias: $a, version: $v) { name version { version } } }`;
const ACCEPT_PINNED = `mutation($planId: ID!, $pin: String) { acceptLicense(planId: $planId, pin: $pin) {
  id pinnedAlias pinnedVersion { version } upgradePolicy terms { upgradePolicy upgradeGraceDays } } }`;
const CONTRACT = `{ myContracts { id pinnedAlias pinnedVersion { version } pendingUpgrade { version { version } appliesAt
  comparison { breaking reasons inputsChanged labelsChanged outputsChanged
    metrics { from { version accuracy verified } to { version accuracy verified } } } } } }`;
const ACCEPT_UPGRADE = `mutation($c: ID!, $v: String!) { acceptVersionUpgrade(contract: $c, version: $v) {
  pinnedVersion { version } pendingUpgrade { since } } }`;
const DECLINE_UPGRADE = `mutation($c: ID!) { declineVersionUpgrade(contract: $c) { pinnedVersion { version } pendingUpgrade { since } } }`;
const CREATE_PREDICTION = `mutation($input: CreatePredictionInput!) { createPrediction(input: $input) {
  contractId modelVersion { version } } }`;
const INPUTS = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]];

describe('consumer-accepted version upgrades', () => {
  let server: TestServer;
  let owner: SignedUpUser;

  before(async () => {
    server = await startTestServer({ JOBS_POLLING_INTERVAL_SECONDS: '1' });
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  /** A model with 1.0.0 (two labels), and a way to publish more versions: `classes` 3 changes its outputs. */
  async function model() {
    const { model: created, version } = await publishedMlp(server, { token: owner.token }, { sizes: [8, 4, 2] });
    const versionIds: Record<string, string> = { '1.0.0': version.id };
    const release = async (number: string, options: { classes?: number; accuracy?: number } = {}) => {
      const classes = options.classes ?? 2;
      const artifact = await uploadWithTfjs(server, buildMlp([8, 4, classes], Object.keys(versionIds).length + 11), {
        token: owner.token,
      });
      const published = await publish(
        server,
        { token: owner.token },
        {
          model: created.slug,
          version: number,
          artifactId: artifact.id,
          labels: DIGITS.slice(0, classes),
          ...(options.accuracy === undefined
            ? {}
            : { metrics: { dataset: 'holdout', samples: 100, accuracy: options.accuracy } }),
        },
      );
      versionIds[number] = published.id;
      return published;
    };
    return { slug: created.slug, modelId: created.id, versionIds, release };
  }

  const setAlias = async (slug: string, alias: string, version: string) => {
    const res = await server.gql(SET_ALIAS, { m: slug, a: alias, v: version }, { token: owner.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  };
  const acceptPinned = async (user: SignedUpUser, planId: string, pin?: string) => {
    const res = await server.gql(ACCEPT_PINNED, { planId, pin }, { token: user.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.acceptLicense;
  };
  /** A new consumer on a plan of `slug` that follows its alias after a grace period of 3 days. */
  const graceLicensee = async (slug: string) => {
    const plan = await createPlan(server, { token: owner.token }, slug, {
      upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE',
      upgradeGraceDays: 3,
    });
    const consumer = await signUp(server);
    return { consumer, contract: await acceptPinned(consumer, plan.id) };
  };
  const contractOf = async (user: SignedUpUser) =>
    (await server.gql(CONTRACT, {}, { token: user.token })).data!.myContracts[0];
  /** The version a call is served: `version` as the call names it (absent: none). */
  const served = async (user: SignedUpUser, slug: string, version?: string) => {
    const res = await server.gql(PREDICT, { input: { model: slug, version, inputs: INPUTS } }, { token: user.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.predict.modelVersion.version as string;
  };
  const eventsOf = async (user: SignedUpUser) =>
    (
      await server.sql.query<{ id: string; type: string; data: any }>(
        'SELECT id, type, data FROM events WHERE account_id = $1 ORDER BY created_at, id',
        [user.id],
      )
    ).rows;
  const switches = async (contractId: string) =>
    (
      await server.sql.query<{ actor_id: string | null; details: any }>(
        `SELECT actor_id, details FROM audit_events WHERE action = 'contract.version_switched' AND target_id = $1
         ORDER BY chain_seq`,
        [contractId],
      )
    ).rows;

  it('keeps a PINNED contract on its version when its alias moves, until the consumer accepts', async () => {
    const m = await model();
    await setAlias(m.slug, 'stable', '1.0.0');
    const plan = await createPlan(server, { token: owner.token }, m.slug);
    const consumer = await signUp(server);
    const contract = await acceptPinned(consumer, plan.id);
    // Without a pin the contract follows the model's `stable` alias, by the plan's policy (PINNED by default).
    assert.deepEqual(
      { ...contract, id: undefined },
      {
        id: undefined,
        pinnedAlias: 'stable',
        pinnedVersion: { version: '1.0.0' },
        upgradePolicy: 'PINNED',
        terms: { upgradePolicy: 'PINNED', upgradeGraceDays: null },
      },
    );

    await m.release('1.1.0', { accuracy: 0.9 });
    await setAlias(m.slug, 'stable', '1.1.0');
    assert.equal(await served(consumer, m.slug), '1.0.0', 'no version named: the pinned version');
    assert.equal(await served(consumer, m.slug, 'stable'), '1.0.0', 'its own alias: the pinned version');
    assert.equal(await served(consumer, m.slug, '1.1.0'), '1.1.0', 'an explicit version is served to try it');
    assert.equal(await served(owner, m.slug, 'stable'), '1.1.0', 'the owner is served the alias as it points');
    const usage = await server.sql.query<{ model_version_id: string }>(
      'SELECT model_version_id FROM usage_records WHERE consumer_id = $1 ORDER BY at',
      [consumer.id],
    );
    assert.deepEqual(
      usage.rows.map((r) => r.model_version_id),
      [m.versionIds['1.0.0'], m.versionIds['1.0.0'], m.versionIds['1.1.0']],
      'usage records name the version that served each call',
    );

    const pending = (await contractOf(consumer)).pendingUpgrade;
    assert.deepEqual(pending, {
      version: { version: '1.1.0' },
      appliesAt: null,
      comparison: {
        breaking: false,
        reasons: [],
        inputsChanged: false,
        labelsChanged: false,
        outputsChanged: false,
        metrics: {
          from: { version: '1.0.0', accuracy: null, verified: false },
          to: { version: '1.1.0', accuracy: 0.9, verified: false },
        },
      },
    });
    const events = await eventsOf(consumer);
    assert.deepEqual(
      events.map((e) => e.type).sort(),
      ['alias.moved', 'alias.moved', 'upgrade.available', 'version.published'],
      'published 1.1.0 (latest moved), then stable moved and the upgrade was offered',
    );
    const dispatchJobs = await server.sql.query(
      `SELECT 1 FROM pgboss.job WHERE name = 'event-dispatch' AND data->>'eventId' = ANY($1::text[])`,
      [events.map((e) => e.id)],
    );
    assert.equal(dispatchJobs.rowCount, events.length, 'each event is written with the job that dispatches it');
    const offer = events.find((e) => e.type === 'upgrade.available')!.data;
    assert.deepEqual([offer.alias, offer.from, offer.to], ['stable', '1.0.0', '1.1.0']);
    assert.deepEqual(offer.contracts, [{ contract: contract.id, from: '1.0.0', appliesAt: null }]);
    assert.equal(offer.comparisons['1.0.0'].breaking, false);
    assert.deepEqual(offer.comparisons['1.0.0'].metrics.to, {
      version: '1.1.0',
      accuracy: 0.9,
      macroF1: null,
      verified: false,
    });

    // Only the consumer decides: a stranger does not see the contract, the model's owner may not.
    const stranger = await signUp(server);
    for (const [user, code] of [
      [stranger, 'NOT_FOUND'],
      [owner, 'FORBIDDEN'],
    ] as const) {
      expectError(await server.gql(ACCEPT_UPGRADE, { c: contract.id, v: '1.1.0' }, { token: user.token }), code);
      expectError(await server.gql(DECLINE_UPGRADE, { c: contract.id }, { token: user.token }), code);
    }
    assert.equal(await served(consumer, m.slug), '1.0.0');

    const accepted = await server.gql(ACCEPT_UPGRADE, { c: contract.id, v: '1.1.0' }, { token: consumer.token });
    assert.deepEqual(accepted.data!.acceptVersionUpgrade, {
      pinnedVersion: { version: '1.1.0' },
      pendingUpgrade: null,
    });
    assert.equal(await served(consumer, m.slug), '1.1.0', 'the next call is served the accepted version');
    assert.deepEqual(await switches(contract.id), [
      {
        actor_id: consumer.id,
        details: { from: m.versionIds['1.0.0'], to: m.versionIds['1.1.0'], reason: 'accepted' },
      },
    ]);
  });

  it('serves the pinned version on every path: async and batch predictions, explain, Open Inference', async () => {
    const m = await model();
    await setAlias(m.slug, 'stable', '1.0.0');
    const plan = await createPlan(server, { token: owner.token }, m.slug, { explanationsAllowed: true });
    const consumer = await signUp(server);
    const contract = await acceptPinned(consumer, plan.id);
    await m.release('1.1.0');
    await setAlias(m.slug, 'stable', '1.1.0');
    const auth = { token: consumer.token };

    const queued = await server.gql(CREATE_PREDICTION, { input: { model: m.slug, inputs: INPUTS } }, auth);
    assert.equal(queued.errors, undefined, JSON.stringify(queued.errors));
    assert.deepEqual(queued.data!.createPrediction, { contractId: contract.id, modelVersion: { version: '1.0.0' } });
    const batch = await createBatch(server.url, auth, {
      model: m.slug,
      dataset: await datasetId(server, auth, inputsJsonl(INPUTS)),
    });
    assert.deepEqual([batch.version.version, batch.contractId], ['1.0.0', contract.id]);
    const explanation = await explained(server, auth, { model: m.slug, inputs: INPUTS, method: 'GRADIENT_X_INPUT' });
    assert.equal(explanation.modelVersion.version, '1.0.0');
    const inferred = await fetch(`${server.origin}/v2/models/${m.slug}/infer`, {
      method: 'POST',
      headers: { ...authHeaders(auth), 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 8], datatype: 'FP32', data: INPUTS }] }),
    });
    const answer = (await inferred.json()) as { model_version: string };
    assert.equal(inferred.status, 200, JSON.stringify(answer));
    assert.equal(answer.model_version, '1.0.0');
    assert.equal(await served(consumer, m.slug, 'stable'), '1.0.0');
  });

  it('serves the pin of the contract that pays: the first one usable for the call', async () => {
    const m = await model();
    const explainless = await createPlan(server, { token: owner.token }, m.slug);
    const explaining = await createPlan(server, { token: owner.token }, m.slug, {
      name: 'Explained',
      explanationsAllowed: true,
    });
    const consumer = await signUp(server);
    await acceptPinned(consumer, explainless.id, '1.0.0');
    await m.release('1.1.0');
    const paying = await acceptPinned(consumer, explaining.id, '1.1.0');
    // The older contract may not explain: the call is the newer one's, and so is the version it is served.
    const explanation = await explained(
      server,
      { token: consumer.token },
      {
        model: m.slug,
        inputs: INPUTS,
        method: 'GRADIENT_X_INPUT',
      },
    );
    assert.deepEqual([explanation.modelVersion.version, explanation.contractId], ['1.1.0', paying.id]);
    assert.equal(await served(consumer, m.slug), '1.0.0', 'predict is the older contract’s, at its pin');
  });

  it('moves a FOLLOW_ALIAS contract with its alias at once; an exact pin stays', async () => {
    const m = await model();
    const plan = await createPlan(server, { token: owner.token }, m.slug, { upgradePolicy: 'FOLLOW_ALIAS' });
    const follower = await signUp(server);
    const follows = await acceptPinned(follower, plan.id, 'latest');
    const exact = await signUp(server);
    assert.deepEqual((await acceptPinned(exact, plan.id, '1.0.0')).pinnedAlias, null);

    await m.release('1.1.0');
    assert.equal(await served(follower, m.slug), '1.1.0');
    assert.equal(await served(exact, m.slug), '1.0.0');
    assert.equal((await contractOf(follower)).pendingUpgrade, null);
    assert.equal((await contractOf(exact)).pendingUpgrade, null);
    assert.deepEqual((await eventsOf(follower)).map((e) => e.type).sort(), ['alias.moved', 'version.published']);

    // Archiving 1.1.0 moves `latest` back: the follower follows it, and is served again.
    const archived = await server.gql(
      'mutation($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { status } }',
      { m: m.slug, v: '1.1.0' },
      { token: owner.token },
    );
    assert.equal(archived.errors, undefined, JSON.stringify(archived.errors));
    assert.equal(await served(follower, m.slug), '1.0.0');
    assert.deepEqual(await switches(follows.id), [
      {
        actor_id: owner.id,
        details: { from: m.versionIds['1.0.0'], to: m.versionIds['1.1.0'], reason: 'followed latest' },
      },
      {
        actor_id: owner.id,
        details: { from: m.versionIds['1.1.0'], to: m.versionIds['1.0.0'], reason: 'followed latest' },
      },
    ]);
  });

  it('applies a compatible upgrade when the grace period ends, and never a breaking one', async () => {
    const m = await model();
    const { consumer, contract } = await graceLicensee(m.slug);
    assert.deepEqual(contract.terms, { upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE', upgradeGraceDays: 3 });

    await m.release('1.1.0');
    const pending = (await contractOf(consumer)).pendingUpgrade;
    const inThreeDays = Date.now() + 3 * 86_400_000;
    assert.ok(Math.abs(Date.parse(pending.appliesAt) - inThreeDays) < 60_000, pending.appliesAt);
    assert.equal(await served(consumer, m.slug), '1.0.0', 'not before the grace period ends');

    const scheduled = await server.sql.query<{ start_after: Date }>(
      `SELECT start_after FROM pgboss.job WHERE name = 'contract-upgrade-apply' AND data->>'contractId' = $1`,
      [contract.id],
    );
    assert.equal(scheduled.rows[0]!.start_after.getTime(), Date.parse(pending.appliesAt), 'the job waits for the date');

    // The grace period ends: the contract's due date and its job's start are moved to now.
    await server.sql.query('UPDATE contracts SET pending_applies_at = now() WHERE id = $1', [contract.id]);
    const job = await server.sql.query(
      `UPDATE pgboss.job SET start_after = now() WHERE name = 'contract-upgrade-apply' AND data->>'contractId' = $1`,
      [contract.id],
    );
    assert.equal(job.rowCount, 1);
    const deadline = Date.now() + 30_000;
    while ((await served(consumer, m.slug)) !== '1.1.0') {
      assert.ok(Date.now() < deadline, 'the grace job did not apply the upgrade');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal((await contractOf(consumer)).pendingUpgrade, null);
    assert.deepEqual(await switches(contract.id), [
      {
        actor_id: null,
        details: { from: m.versionIds['1.0.0'], to: m.versionIds['1.1.0'], reason: 'grace period ended' },
      },
    ]);

    // 2.0.0 answers three classes: breaking, offered without a date, and no job to apply it.
    await m.release('2.0.0', { classes: 3 });
    const breaking = (await contractOf(consumer)).pendingUpgrade;
    assert.equal(breaking.version.version, '2.0.0');
    assert.equal(breaking.appliesAt, null);
    assert.deepEqual(
      [breaking.comparison.breaking, breaking.comparison.labelsChanged, breaking.comparison.outputsChanged],
      [true, true, true],
    );
    assert.deepEqual(breaking.comparison.reasons, [
      'output "output" changed from classification of 2 to classification of 3',
      'output "output" changed its labels',
    ]);
    const jobs = await server.sql.query(
      `SELECT 1 FROM pgboss.job WHERE name = 'contract-upgrade-apply' AND data->>'versionId' = $1`,
      [m.versionIds['2.0.0']],
    );
    assert.equal(jobs.rowCount, 0);
    const declined = await server.gql(DECLINE_UPGRADE, { c: contract.id }, { token: consumer.token });
    assert.deepEqual(declined.data!.declineVersionUpgrade, {
      pinnedVersion: { version: '1.1.0' },
      pendingUpgrade: null,
    });
    assert.equal(await served(consumer, m.slug), '1.1.0');
    expectError(await server.gql(DECLINE_UPGRADE, { c: contract.id }, { token: consumer.token }), 'BAD_USER_INPUT');
  });

  it('applies a due grace upgrade whose job is missing at the licensing sweep, once', async () => {
    const m = await model();
    const { consumer, contract } = await graceLicensee(m.slug);
    await m.release('1.1.0');
    // Its job gave up (or never was): deleted, and the grace period ended.
    const deleted = await server.sql.query(
      `DELETE FROM pgboss.job WHERE name = 'contract-upgrade-apply' AND data->>'contractId' = $1`,
      [contract.id],
    );
    assert.equal(deleted.rowCount, 1);
    await server.sql.query('UPDATE contracts SET pending_applies_at = now() WHERE id = $1', [contract.id]);
    const sweep = server.app.services.licensingSweep;
    await sweep.run();
    await sweep.run();
    assert.equal(await served(consumer, m.slug), '1.1.0');
    assert.deepEqual(
      (await switches(contract.id)).map((s) => s.details.reason),
      ['grace period ended'],
    );
  });

  it('withdraws offers of an archived version, never applies one, and tells consumers its aliases are gone', async () => {
    const m = await model();
    await setAlias(m.slug, 'stable', '1.0.0');
    const { consumer, contract } = await graceLicensee(m.slug);
    await m.release('1.1.0');
    await setAlias(m.slug, 'stable', '1.1.0');
    assert.equal((await contractOf(consumer)).pendingUpgrade.version.version, '1.1.0');

    const archived = await server.gql(
      'mutation($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { status } }',
      { m: m.slug, v: '1.1.0' },
      { token: owner.token },
    );
    assert.equal(archived.errors, undefined, JSON.stringify(archived.errors));
    assert.equal((await contractOf(consumer)).pendingUpgrade, null, 'the offer went with its version');
    const withdrawn = await server.sql.query(
      `SELECT actor_id, details FROM audit_events WHERE action = 'contract.upgrade_withdrawn' AND target_id = $1`,
      [contract.id],
    );
    assert.deepEqual(withdrawn.rows, [
      {
        actor_id: owner.id,
        details: { kept: m.versionIds['1.0.0'], withdrawn: m.versionIds['1.1.0'], reason: 'version archived' },
      },
    ]);
    // Written in one transaction (one created_at): compared in alias order.
    const moves = (await eventsOf(consumer))
      .filter((e) => e.type === 'alias.moved' && e.data.from === '1.1.0')
      .map((e) => [e.data.alias, e.data.from, e.data.to])
      .sort();
    assert.deepEqual(
      moves,
      [
        ['latest', '1.1.0', '1.0.0'],
        ['stable', '1.1.0', null],
      ],
      'the archive removed stable and moved latest back',
    );

    // An offer of the archived version left due (as the code before this fix left them): its job applies nothing.
    await server.sql.query(
      `UPDATE contracts SET pending_version_id = $2, pending_since = now(), pending_applies_at = now() WHERE id = $1`,
      [contract.id, m.versionIds['1.1.0']],
    );
    const job = await server.sql.query<{ id: string }>(
      `UPDATE pgboss.job SET start_after = now() WHERE name = 'contract-upgrade-apply' AND data->>'contractId' = $1
       RETURNING id`,
      [contract.id],
    );
    assert.equal(job.rowCount, 1);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await server.sql.query('SELECT state FROM pgboss.job WHERE id = $1', [job.rows[0]!.id]);
      if (rows[0].state === 'completed') break;
      assert.ok(Date.now() < deadline, `the grace job is still ${rows[0].state}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal((await contractOf(consumer)).pinnedVersion.version, '1.0.0');
    assert.deepEqual(await switches(contract.id), []);
    expectError(
      await server.gql(ACCEPT_UPGRADE, { c: contract.id, v: '1.1.0' }, { token: consumer.token }),
      'BAD_USER_INPUT',
    );
  });

  it('refuses upgrade terms and pins that cannot hold', async () => {
    const m = await model();
    const planWith = (input: Record<string, unknown>) =>
      server.gql(CREATE_PLAN, { input: { ...PLAN_DEFAULTS, model: m.slug, ...input } }, { token: owner.token });
    for (const input of [
      { upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE' },
      { upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE', upgradeGraceDays: 91 },
      { upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE', upgradeGraceDays: 0 },
      { upgradePolicy: 'PINNED', upgradeGraceDays: 3 },
    ]) {
      const error = expectError(await planWith(input), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.upgradeGraceDays', JSON.stringify(input));
    }
    const plan = await createPlan(server, { token: owner.token }, m.slug, { versions: '^1.0.0' });
    const update = (input: Record<string, unknown>) =>
      server.gql(
        `mutation($id: ID!, $input: UpdateLicensePlanInput!) {
          updateLicensePlan(id: $id, input: $input) { upgradePolicy upgradeGraceDays } }`,
        { id: plan.id, input },
        { token: owner.token },
      );
    expectError(await update({ upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE' }), 'BAD_USER_INPUT');
    const graced = await update({ upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE', upgradeGraceDays: 5 });
    assert.deepEqual(graced.data!.updateLicensePlan, {
      upgradePolicy: 'FOLLOW_ALIAS_AFTER_GRACE',
      upgradeGraceDays: 5,
    });
    const pinnedAgain = await update({ upgradePolicy: 'PINNED' });
    assert.deepEqual(pinnedAgain.data!.updateLicensePlan, { upgradePolicy: 'PINNED', upgradeGraceDays: null });
    const consumer = await signUp(server);
    for (const pin of ['9.9.9', 'nightly', 'x'.repeat(300), ' ']) {
      const res = await server.gql(ACCEPT_PINNED, { planId: plan.id, pin }, { token: consumer.token });
      assert.equal(expectError(res, 'BAD_USER_INPUT').extensions!.field, 'pin', pin);
    }
    const uncovered = await m.release('2.0.0');
    assert.equal(uncovered.version, '2.0.0');
    const res = await server.gql(ACCEPT_PINNED, { planId: plan.id, pin: '2.0.0' }, { token: consumer.token });
    expectError(res, 'BAD_USER_INPUT');
    const contract = await acceptPinned(consumer, plan.id, '1.0.0');
    expectError(
      await server.gql(ACCEPT_UPGRADE, { c: contract.id, v: '2.0.0' }, { token: consumer.token }),
      'BAD_USER_INPUT',
    );
    expectError(
      await server.gql(ACCEPT_UPGRADE, { c: contract.id, v: 'latest' }, { token: consumer.token }),
      'BAD_USER_INPUT',
    );
  });
});
