// One publish pipeline (validate → derive → measure → store → commit): the blobs a derivation produces are
// written in the version's own transaction, so a publish that does not commit leaves none behind; and the
// pipeline takes other derivations than the owner mark (what optimizeModelVersion commits).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AuditAction } from '../../src/audit/audit-service.js';
import type { Actor } from '../../src/auth/principal.js';
import { parseSignature } from '../../src/models/signature.js';
import { ConflictError } from '../../src/server/errors.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import {
  assertClose,
  buildMlp,
  createModel,
  expectedOutputs,
  PREDICT,
  publish,
  randomRows,
  storedArtifactOf,
  uploadWithTfjs,
} from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const ADMIN = { email: 'root@modelmarket.test', password: 'an admin passphrase' };
const PUBLISH_MARKED = `mutation P($input: PublishModelVersionInput!) {
  publishModelVersion(input: $input) { id version watermark { marked } } }`;

describe('the publish pipeline', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let artifactId: string;

  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    artifactId = (await uploadWithTfjs(server, buildMlp([784, 16, 10], 3), { token: owner.token })).id;
  });
  after(() => server.close());

  const blobCount = async () =>
    (await server.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM artifact_blobs')).rows[0]!.n;
  const publishMarked = (slug: string, version: string) =>
    server.gql(
      PUBLISH_MARKED,
      { input: { model: slug, version, artifactId, watermark: true } },
      { token: owner.token },
    );

  it('two concurrent publishes of one version number: one commits, the other is CONFLICT and stores nothing', async () => {
    const { slug } = await createModel(server, { token: owner.token });
    const before = await blobCount();
    // Both pass the early check (neither has committed) and both mark: only the commit can refuse one.
    const answers = await Promise.all([publishMarked(slug, '1.0.0'), publishMarked(slug, '1.0.0')]);
    const won = answers.filter((res) => !res.errors);
    assert.equal(won.length, 1, JSON.stringify(answers.map((res) => res.errors)));
    assert.equal(won[0]!.data!.publishModelVersion.watermark.marked, true);
    assert.match(
      expectError(
        answers.find((res) => res.errors)!,
        'CONFLICT',
      ).message,
      /already exists/,
    );
    // Each publish marks with its own version id's key, so the loser's marked bytes differ from the winner's:
    // exactly one new blob, the one the committed version serves.
    assert.equal(await blobCount(), before + 1);
    const { rows } = await server.sql.query(
      `SELECT a.sha256, a.served, (SELECT count(*)::int FROM artifact_blobs b WHERE b.sha256 = a.sha256) AS stored
       FROM artifact_variants a WHERE a.version_id = $1`,
      [won[0]!.data!.publishModelVersion.id],
    );
    assert.equal(rows.length, 1);
    assert.deepEqual({ served: rows[0].served, stored: rows[0].stored }, { served: true, stored: 1 });
  });

  it('a publish whose transaction fails leaves no blob, version, variant or audit event behind', async () => {
    const { slug } = await createModel(server, { token: owner.token });
    // The audit event is the transaction's last write: failing it rolls back the blob written before it.
    await server.sql.query(`
      CREATE FUNCTION fail_publish() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'publish refused by test'; END $$;
      CREATE TRIGGER fail_publish BEFORE INSERT ON audit_events
        FOR EACH ROW WHEN (NEW.action = '${AuditAction.VERSION_PUBLISHED}') EXECUTE FUNCTION fail_publish();`);
    const counts = async () =>
      (
        await server.sql.query(
          `SELECT (SELECT count(*)::int FROM artifact_blobs) AS blobs, (SELECT count(*)::int FROM model_versions) AS versions,
             (SELECT count(*)::int FROM artifact_variants) AS variants,
             (SELECT count(*)::int FROM audit_events WHERE action = $1) AS events`,
          [AuditAction.VERSION_PUBLISHED],
        )
      ).rows[0];
    const before = await counts();
    try {
      expectError(await publishMarked(slug, '1.0.0'), 'INTERNAL_SERVER_ERROR');
      assert.deepEqual(await counts(), before);
    } finally {
      await server.sql.query('DROP TRIGGER fail_publish ON audit_events; DROP FUNCTION fail_publish()');
    }
    // Nothing was half-done: the same number publishes now, with one new blob.
    const res = await publishMarked(slug, '1.0.0');
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(await counts(), {
      blobs: before.blobs + 1,
      versions: before.versions + 1,
      variants: before.variants + 1,
      events: before.events + 1,
    });
  });

  it('commits a derived version (an optimisation): it serves the derived bytes and names its parent', async () => {
    const { slug } = await createModel(server, { token: owner.token });
    const parent = await publish(server, { token: owner.token }, { model: slug, version: '1.0.0', artifactId });
    const { models } = server.app.services;
    const actor: Actor = {
      principal: { kind: 'user', userId: owner.id, role: 'OWNER', sessionId: randomUUID() },
      ip: '127.0.0.1',
      requestId: 'publish-pipeline-test',
    };
    const parentRow = await models.versionById(parent.id);
    const derive = async (seed: number, number: string) => {
      const derived = buildMlp([784, 16, 10], seed);
      const bytes = await storedArtifactOf(derived);
      const { model, version } = await models.newVersionNumber(actor, slug, number, 'input.newVersion');
      const draft = {
        id: randomUUID(),
        model,
        version,
        artifactId: parentRow.artifactId,
        signature: parseSignature(parentRow.signature, 'signature'),
        labels: parentRow.labels,
        changelog: 'quantized',
        card: {},
        derivedFromId: parent.id,
      };
      const commit = (overrides: { version?: string } = {}) =>
        models.commitVersion(
          actor,
          { ...draft, ...overrides },
          [
            {
              kind: 'QUANTIZED',
              params: { dtype: 'uint8' },
              artifact: bytes,
              report: { sizeBefore: 1, sizeAfter: 1 },
              served: true,
            },
          ],
          { action: AuditAction.VERSION_PUBLISHED, details: { model: slug, version, derivedFrom: parent.version } },
        );
      return { derived, bytes, commit };
    };

    const first = await derive(21, '1.1.0');
    const committed = await first.commit();
    assert.equal(committed.derivedFromId, parent.id);
    const rows = randomRows(3, 784, 9);
    const predicted = await server.gql(
      PREDICT,
      { input: { model: slug, version: '1.1.0', inputs: rows } },
      { token: owner.token },
    );
    assert.equal(predicted.errors, undefined, JSON.stringify(predicted.errors));
    const expected = expectedOutputs(first.derived, rows, [784]);
    predicted.data!.predict.outputs.forEach((o: { values: number[] }, i: number) =>
      assertClose(o.values, expected[i]!),
    );
    const { rows: variants } = await server.sql.query(
      `SELECT kind, params, sha256, served, report FROM artifact_variants WHERE version_id = $1`,
      [committed.id],
    );
    assert.deepEqual(variants, [
      {
        kind: 'QUANTIZED',
        params: { dtype: 'uint8' },
        sha256: first.bytes.sha256,
        served: true,
        report: { sizeBefore: 1, sizeAfter: 1 },
      },
    ]);

    // A second commit of the same number (a race the early check missed) is CONFLICT, and its bytes are gone.
    const second = await derive(22, '1.2.0');
    const before = await blobCount();
    await assert.rejects(second.commit({ version: '1.1.0' }), ConflictError);
    assert.equal(await blobCount(), before);
  });

  it('ModelVersion.variants: the owner sees its marked weights, an admin licensee copies too, others nothing', async () => {
    const { slug } = await createModel(server, { token: owner.token });
    const published = await publishMarked(slug, '1.0.0');
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    const versionId = published.data!.publishModelVersion.id;
    const plan = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: true });
    const licensee = await signUp(server);
    const contract = await accept(server, { token: licensee.token }, plan.id);
    const downloaded = await fetch(`${server.origin}/v1/versions/${versionId}/model.json`, {
      headers: { authorization: `Bearer ${licensee.token}` },
    });
    assert.equal(downloaded.status, 200);
    await downloaded.arrayBuffer();

    const VARIANTS = `query($s: String!) { model(slug: $s) { versions { variants {
      kind sha256 served params report contractId createdAt } } } }`;
    const variantsAs = async (token?: string) => {
      const res = await server.gql(VARIANTS, { s: slug }, token ? { token } : undefined);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      return res.data!.model.versions[0].variants as Record<string, any>[];
    };
    const { rows } = await server.sql.query(
      `SELECT kind, sha256, contract_id FROM artifact_variants WHERE version_id = $1 ORDER BY created_at`,
      [versionId],
    );
    assert.deepEqual(
      rows.map((r) => [r.kind, r.contract_id]),
      [
        ['OWNER_MARKED', null],
        ['LICENSEE_COPY', contract.id],
      ],
    );
    const ownerVariants = await variantsAs(owner.token);
    assert.equal(ownerVariants.length, 1, 'no licensee copy for the owner');
    const [ownerMark] = ownerVariants;
    assert.equal(ownerMark!.kind, 'OWNER_MARKED');
    assert.equal(ownerMark!.sha256, rows[0].sha256);
    assert.equal(ownerMark!.served, true);
    assert.equal(ownerMark!.report.marked, true);
    assert.deepEqual(ownerMark!.params.key, 'owner');
    assert.ok(ownerMark!.params.layout.carriers.includes(ownerMark!.report.tensor));

    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    assert.deepEqual(
      (await variantsAs(admin.token)).map((v) => [v.kind, v.sha256, v.served, v.contractId]),
      [
        ['OWNER_MARKED', rows[0].sha256, true, null],
        ['LICENSEE_COPY', rows[1].sha256, false, contract.id],
      ],
    );
    // The licensee downloads its copy but sees no variant (their parameters name the marked tensors); a
    // stranger sees none either.
    assert.deepEqual(await variantsAs(licensee.token), []);
    assert.deepEqual(await variantsAs((await signUp(server, { role: 'OWNER' })).token), []);
    assert.deepEqual(await variantsAs(), []);
  });
});
