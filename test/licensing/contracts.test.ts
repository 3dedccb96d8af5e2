import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, PREDICT, publish, publishedMlp, randomRows, uploadWithTfjs } from '../support/models.js';
import { accept, ACCEPT, CREATE_PLAN, createPlan, PLAN_DEFAULTS, transition } from '../support/licensing.js';
import { assertLedgerHolds } from '../support/ledger.js';

const ADMIN = { email: 'admin@licensing.test', password: 'licensing admin phrase' };
const VERIFY = `query V($t: String!) { verifyLicenseCertificate(token: $t) { valid reason contractId status model versions licensee termsDigest } }`;

describe('licence plans and contracts', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  const rows = randomRows(2, 784, 1);

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token })).model.slug;
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  const predictAs = (user: SignedUpUser, extra: Record<string, unknown> = {}) =>
    server.gql(PREDICT, { input: { model: slug, inputs: rows, ...extra } }, { token: user.token });
  const reasonOf = async (user: SignedUpUser, extra: Record<string, unknown> = {}) => {
    const error = expectError(await predictAs(user, extra), 'FORBIDDEN');
    return error.extensions!.reason;
  };

  it('lets only the model owner (or an admin) create plans, with validated terms', async () => {
    const consumer = await signUp(server);
    const stranger = await signUp(server, { role: 'OWNER' });
    expectError(
      await server.gql(CREATE_PLAN, { input: { ...PLAN_DEFAULTS, model: slug } }, { token: consumer.token }),
      'FORBIDDEN',
    );
    expectError(
      await server.gql(CREATE_PLAN, { input: { ...PLAN_DEFAULTS, model: slug } }, { token: stranger.token }),
      'FORBIDDEN',
    );
    const bad: [Record<string, unknown>, string][] = [
      [{ pricePerPrediction: '-1' }, 'input.pricePerPrediction'],
      [{ pricePerPrediction: '1e3' }, 'input.pricePerPrediction'],
      [{ currency: 'EURO' }, 'input.currency'],
      [{ versions: 'not a range' }, 'input.versions'],
      [{ predictionQuota: 0 }, 'input.predictionQuota'],
      [{ rateLimitPerMinute: -5 }, 'input.rateLimitPerMinute'],
      [{ name: ' ' }, 'input.name'],
    ];
    const count = async () => Number((await server.sql.query('SELECT count(*) FROM license_plans')).rows[0].count);
    const before = await count();
    for (const [override, field] of bad) {
      const error = expectError(
        await server.gql(
          CREATE_PLAN,
          { input: { ...PLAN_DEFAULTS, model: slug, ...override } },
          { token: owner.token },
        ),
        'BAD_USER_INPUT',
      );
      assert.equal(error.extensions!.field, field);
    }
    assert.equal(await count(), before);
  });

  it('makes a model callable only under a contract; no plan means owner and admins only', async () => {
    const consumer = await signUp(server);
    assert.equal(await reasonOf(consumer), 'NO_CONTRACT');
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    assert.equal((await predictAs(admin)).errors, undefined);
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 1000 });
    const contract = await accept(server, { token: consumer.token }, plan.id);
    assert.equal(contract.status, 'ACTIVE');
    const ok = await predictAs(consumer);
    assert.equal(ok.errors, undefined, JSON.stringify(ok.errors));
    assert.equal(ok.data!.predict.contractId, contract.id);
    expectError(await server.gql(ACCEPT, { planId: plan.id }, { token: consumer.token }), 'CONFLICT');
    expectError(await server.gql(ACCEPT, { planId: plan.id }, { token: owner.token }), 'BAD_USER_INPUT');
  });

  it('freezes terms: a plan update applies only to contracts made afterwards', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, {
      pricePerPrediction: '0.5',
      predictionQuota: 10,
    });
    const early = await signUp(server);
    const before = await accept(server, { token: early.token }, plan.id);
    const updated = await server.gql(
      `mutation U($id: ID!, $i: UpdateLicensePlanInput!) { updateLicensePlan(id: $id, input: $i) { revision pricePerPrediction predictionQuota } }`,
      { id: plan.id, i: { pricePerPrediction: '0.9', predictionQuota: 5 } },
      { token: owner.token },
    );
    assert.deepEqual(updated.data!.updateLicensePlan, { revision: 2, pricePerPrediction: '0.9', predictionQuota: 5 });
    const late = await accept(server, { token: (await signUp(server)).token }, plan.id);
    assert.equal(before.terms.pricePerPrediction, '0.5');
    assert.equal(before.terms.predictionQuota, 10);
    assert.equal(before.terms.planRevision, 1);
    assert.equal(late.terms.pricePerPrediction, '0.9');
    assert.equal(late.terms.planRevision, 2);
    assert.notEqual(before.termsDigest, late.termsDigest);
    const mine = await server.gql(
      '{ myContracts { id terms { pricePerPrediction } predictionQuota } }',
      {},
      { token: early.token },
    );
    assert.deepEqual(mine.data!.myContracts, [
      { id: before.id, terms: { pricePerPrediction: '0.5' }, predictionQuota: 10 },
    ]);
    await server.gql(
      'mutation R($id: ID!) { retireLicensePlan(id: $id) { status } }',
      { id: plan.id },
      { token: owner.token },
    );
    expectError(
      await server.gql(ACCEPT, { planId: plan.id }, { token: (await signUp(server)).token }),
      'BAD_USER_INPUT',
    );
  });

  it('gates access: PENDING until approved; reject, suspend, resume, revoke and cancel take effect on the next call', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { requiresApproval: true });
    const consumer = await signUp(server);
    const other = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    assert.equal(contract.status, 'PENDING');
    assert.equal(contract.certificate, null);
    assert.equal(await reasonOf(consumer), 'PENDING');
    // Consumers cannot decide on contracts, nor touch other consumers' ones.
    expectError(await transition(server, { token: consumer.token }, 'approveContract', contract.id), 'FORBIDDEN');
    expectError(await transition(server, { token: other.token }, 'cancelContract', contract.id), 'NOT_FOUND');
    const approved = await transition(server, { token: owner.token }, 'approveContract', contract.id);
    assert.equal(approved.data!.approveContract.status, 'ACTIVE');
    assert.equal((await predictAs(consumer)).errors, undefined);
    const suspended = await transition(
      server,
      { token: owner.token },
      'suspendContract',
      contract.id,
      'unpaid invoice',
    );
    assert.deepEqual(
      [suspended.data!.suspendContract.status, suspended.data!.suspendContract.statusReason],
      ['SUSPENDED', 'unpaid invoice'],
    );
    assert.equal(await reasonOf(consumer), 'SUSPENDED');
    await transition(server, { token: owner.token }, 'resumeContract', contract.id);
    assert.equal((await predictAs(consumer)).errors, undefined);
    await transition(server, { token: owner.token }, 'revokeContract', contract.id, 'terms breached');
    assert.equal(await reasonOf(consumer), 'REVOKED');
    expectError(await transition(server, { token: owner.token }, 'resumeContract', contract.id), 'BAD_USER_INPUT');

    const second = await accept(server, { token: other.token }, plan.id);
    const rejected = await transition(server, { token: owner.token }, 'rejectContract', second.id, 'not a fit');
    assert.equal(rejected.data!.rejectContract.status, 'REJECTED');
    const third = await accept(server, { token: other.token }, plan.id);
    await transition(server, { token: owner.token }, 'approveContract', third.id);
    const cancelled = await transition(server, { token: other.token }, 'cancelContract', third.id);
    assert.equal(cancelled.data!.cancelContract.status, 'CANCELLED');
    assert.equal(await reasonOf(other), 'NO_CONTRACT');
    const audit = await server.sql.query(`SELECT action FROM audit_events WHERE target_id = $1 ORDER BY chain_seq`, [
      contract.id,
    ]);
    assert.deepEqual(
      audit.rows.map((r) => r.action),
      ['contract.created', 'contract.approved', 'contract.suspended', 'contract.resumed', 'contract.revoked'],
    );
  });

  it('expires contracts at expiresAt without any job, and checks version ranges', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { durationDays: 30, versions: '^1.0.0' });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    assert.ok(Date.parse((contract as any).expiresAt) > Date.now() + 29 * 86_400_000);
    assert.equal((await predictAs(consumer)).errors, undefined);
    const artifact = await uploadWithTfjs(server, buildMlp([784, 16, 10], 99), { token: owner.token });
    await publish(server, { token: owner.token }, { model: slug, version: '2.0.0', artifactId: artifact.id });
    assert.equal(await reasonOf(consumer, { version: '2.0.0' }), 'VERSION_NOT_COVERED');
    assert.equal((await predictAs(consumer, { version: '1.0.0' })).errors, undefined);
    await server.sql.query(`UPDATE contracts SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      contract.id,
    ]);
    assert.equal(await reasonOf(consumer, { version: '1.0.0' }), 'EXPIRED');
    const mine = await server.gql('{ myContracts { status certificate } }', {}, { token: consumer.token });
    assert.deepEqual(mine.data!.myContracts, [{ status: 'EXPIRED', certificate: null }]);
  });

  it('issues certificates a third party verifies offline with the JWKS, and online including revocation', async () => {
    const plan = await createPlan(server, { token: owner.token }, slug, { versions: '>=1.0.0' });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const token = contract.certificate!;
    const { header } = jwt.decode(token, { complete: true })!;
    const jwks = (await (await fetch(`${server.origin}/.well-known/jwks.json`)).json()) as {
      keys: (JsonWebKey & { kid: string })[];
    };
    const key = createPublicKey({ key: jwks.keys.find((k) => k.kid === header.kid)!, format: 'jwk' });
    const offline = jwt.verify(token, key, {
      algorithms: ['ES256'],
      audience: 'modelmarket-licence',
    }) as jwt.JwtPayload;
    assert.deepEqual(
      [offline.sub, offline.model, offline.versions, offline.licensee, offline.termsDigest],
      [contract.id, slug, '>=1.0.0', consumer.id, contract.termsDigest],
    );

    const online = await server.gql(VERIFY, { t: token });
    assert.deepEqual(online.data!.verifyLicenseCertificate, {
      valid: true,
      reason: null,
      contractId: contract.id,
      status: 'ACTIVE',
      model: slug,
      versions: '>=1.0.0',
      licensee: consumer.id,
      termsDigest: contract.termsDigest,
    });
    const [h, p] = token.split('.');
    const forged = `${h}.${p}.${Buffer.from('forged').toString('base64url')}`;
    assert.equal((await server.gql(VERIFY, { t: forged })).data!.verifyLicenseCertificate.reason, 'BAD_SIGNATURE');
    await transition(server, { token: owner.token }, 'revokeContract', contract.id, 'leaked');
    const revoked = (await server.gql(VERIFY, { t: token })).data!.verifyLicenseCertificate;
    assert.deepEqual([revoked.valid, revoked.reason], [false, 'REVOKED']);
  });

  it("keeps contracts private: consumers see their own, owners their models', admins all (audited)", async () => {
    const plan = await createPlan(server, { token: owner.token }, slug);
    const alice = await signUp(server);
    const bob = await signUp(server);
    const aliceContract = await accept(server, { token: alice.token }, plan.id);
    await accept(server, { token: bob.token }, plan.id);
    const aliceSees = (await server.gql('{ myContracts { id } }', {}, { token: alice.token })).data!.myContracts;
    assert.deepEqual(aliceSees, [{ id: aliceContract.id }]);
    expectError(
      await server.gql(
        'query($m: String!) { contractsForModel(model: $m) { id } }',
        { m: slug },
        { token: alice.token },
      ),
      'FORBIDDEN',
    );
    const stranger = await signUp(server, { role: 'OWNER' });
    expectError(
      await server.gql(
        'query($m: String!) { contractsForModel(model: $m) { id } }',
        { m: slug },
        { token: stranger.token },
      ),
      'NOT_FOUND',
    );
    const ownerSees = (
      await server.gql(
        'query($m: String!) { contractsForModel(model: $m) { id consumer { id } } }',
        { m: slug },
        { token: owner.token },
      )
    ).data!.contractsForModel;
    assert.ok(ownerSees.some((c: any) => c.id === aliceContract.id));
    expectError(await server.gql('{ contracts { id } }', {}, { token: owner.token }), 'FORBIDDEN');
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const all = (await server.gql('{ contracts(status: ACTIVE) { id } }', {}, { token: admin.token })).data!.contracts;
    assert.ok(all.some((c: any) => c.id === aliceContract.id));
    const audited = await server.sql.query(`SELECT 1 FROM audit_events WHERE action = 'admin.read' AND actor_id = $1`, [
      admin.id,
    ]);
    assert.ok(audited.rowCount! >= 1);
  });
});
