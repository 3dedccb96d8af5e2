// What a licensee reaches beyond predict: downloads (scoped keys, archived versions, every file metered and
// audited) and what a contract still shows once the model has become PRIVATE (issue 9 rows 6, 11, 16).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, PREDICT, publish, publishedMlp, randomRows, uploadWithTfjs } from '../support/models.js';
import { accept, createPlan, transition } from '../support/licensing.js';

const ARCHIVE = 'mutation($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { status } }';
const FILES = ['model.json', 'model.weights.bin'] as const;

describe('licensee access: downloads and contracts of models that became PRIVATE', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let licensee: SignedUpUser;
  let slug: string;
  let versionId: string;

  const download = (id: string, file: string, headers: Record<string, string>) =>
    fetch(`${server.origin}/v1/versions/${id}/${file}`, { headers });
  const count = async (sql: string, values: unknown[]) =>
    (await server.sql.query<{ n: number }>(sql, values)).rows[0]!.n;
  const downloadsRecorded = async (id: string) => ({
    audited: await count(
      `SELECT count(*)::int AS n FROM audit_events WHERE action = 'model_version.downloaded' AND target_id = $1`,
      [id],
    ),
    metered: await count(
      `SELECT count(*)::int AS n FROM usage_records WHERE status = 'DOWNLOAD' AND model_version_id = $1`,
      [id],
    ),
  });

  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    const published = await publishedMlp(server, { token: owner.token }, { sizes: [8, 4, 2] });
    slug = published.model.slug;
    versionId = published.version.id;
    const plan = await createPlan(server, { token: owner.token }, slug, { downloadAllowed: true });
    licensee = await signUp(server);
    await accept(server, { token: licensee.token }, plan.id);
  });
  after(() => server.close());

  it('downloads with an API key only under the DOWNLOAD scope (owners: also MANAGE_MODELS) (row 6)', async () => {
    const keyOf = async (user: SignedUpUser, scope: string) =>
      (await createApiKey(server, user.token, [scope], scope)).secret;
    const refused = [
      await keyOf(licensee, 'READ_USAGE'),
      await keyOf(licensee, 'PREDICT'),
      await keyOf(owner, 'PREDICT'),
      await keyOf(owner, 'READ_USAGE'),
    ];
    const before = await downloadsRecorded(versionId);
    for (const key of refused) {
      for (const file of FILES) {
        const res = await download(versionId, file, { 'x-api-key': key });
        assert.equal(res.status, 403, `${file} with a key that may not download`);
        assert.equal(((await res.json()) as any).error.code, 'FORBIDDEN');
      }
    }
    assert.deepEqual(await downloadsRecorded(versionId), before, 'a refused download records nothing');

    // The licensee's DOWNLOAD key and the owner's MANAGE_MODELS key load the model with tfjs.
    for (const key of [await keyOf(licensee, 'DOWNLOAD'), await keyOf(owner, 'MANAGE_MODELS')]) {
      const loaded = await tf.loadLayersModel(`${server.origin}/v1/versions/${versionId}/model.json`, {
        requestInit: { headers: { 'x-api-key': key } },
      });
      assert.deepEqual(loaded.inputs[0]!.shape, [null, 8]);
    }
    // A DOWNLOAD key does not open other doors.
    const downloadKey = await keyOf(licensee, 'DOWNLOAD');
    const predict = await server.gql(
      'mutation($i: PredictInput!) { predict(input: $i) { id } }',
      { i: { model: slug, inputs: [[0, 0, 0, 0, 0, 0, 0, 0]] } },
      { apiKey: downloadKey },
    );
    assert.equal(predict.errors?.[0]?.extensions?.code, 'FORBIDDEN');
  });

  it('meters and audits every file of a download, weights included (row 16)', async () => {
    const headers = { authorization: `Bearer ${licensee.token}` };
    const before = await downloadsRecorded(versionId);
    const weights = await download(versionId, 'model.weights.bin', headers);
    assert.equal(weights.status, 200);
    assert.ok((await weights.arrayBuffer()).byteLength > 0);
    assert.deepEqual(await downloadsRecorded(versionId), {
      audited: before.audited + 1,
      metered: before.metered + 1,
    });
    const { rows } = await server.sql.query(
      `SELECT actor_id, details FROM audit_events WHERE action = 'model_version.downloaded' AND target_id = $1
       ORDER BY chain_seq DESC LIMIT 1`,
      [versionId],
    );
    assert.equal(rows[0].actor_id, licensee.id);
    assert.equal(rows[0].details.file, 'model.weights.bin');
    assert.match(rows[0].details.contract, /^[0-9a-f-]{36}$/);
    // In the licensee's usage a download is a download: not a call, not an error.
    const usage = await server.gql(
      `query U($f: UsageFilter) { usage(filter: $f) { totals { calls errors downloads } } }`,
      { f: { model: slug } },
      { token: licensee.token },
    );
    assert.equal(usage.errors, undefined, JSON.stringify(usage.errors));
    const { metered } = await downloadsRecorded(versionId);
    const ownMetered = (
      await server.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM usage_records WHERE status = 'DOWNLOAD' AND consumer_id = $1`,
        [licensee.id],
      )
    ).rows[0]!.n;
    assert.ok(metered >= ownMetered && ownMetered >= 1);
    assert.deepEqual(usage.data!.usage.totals, { calls: 0, errors: 0, downloads: ownMetered });
  });

  it('refuses ARCHIVED versions to licensees; the owner keeps access (row 16)', async () => {
    const artifact = await uploadWithTfjs(server, buildMlp([8, 4, 2], 9), { token: owner.token });
    const archived = await publish(
      server,
      { token: owner.token },
      { model: slug, version: '1.5.0', artifactId: artifact.id },
    );
    const res = await server.gql(ARCHIVE, { m: slug, v: '1.5.0' }, { token: owner.token });
    assert.equal(res.data!.archiveModelVersion.status, 'ARCHIVED');
    for (const file of FILES) {
      const refused = await download(archived.id, file, { authorization: `Bearer ${licensee.token}` });
      assert.equal(refused.status, 403, `licensee ${file}`);
      assert.match(((await refused.json()) as any).error.message, /archived/);
      const mine = await download(archived.id, file, { authorization: `Bearer ${owner.token}` });
      assert.equal(mine.status, 200, `owner ${file}`);
    }
    // Only the owner's two files were recorded.
    assert.deepEqual(await downloadsRecorded(archived.id), { audited: 2, metered: 2 });
  });

  it('hides a model that became PRIVATE, its new versions and plans, from a former licensee (row 11)', async () => {
    const QUERY = `{ myContracts { id status terms { planName }
      plan { name model { slug } } model { slug versions { version changelog } plans { name pricePerPrediction } } } }`;
    const former = await signUp(server);
    const plan = await createPlan(server, { token: owner.token }, slug, { name: 'Early access' });
    const contract = await accept(server, { token: former.token }, plan.id);
    const seen = async () => {
      const res = await server.gql(QUERY, {}, { token: former.token });
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      return res.data!.myContracts.find((c: any) => c.id === contract.id);
    };
    // While the model is PUBLIC the licensee sees it through the contract (the query reaches it).
    assert.equal((await seen()).model.slug, slug);
    assert.equal((await seen()).plan.model.slug, slug);
    // A call with an idempotency key, whose stored answer names the version.
    const call = { model: slug, inputs: randomRows(1, 8, 3), requestId: 'before-private' };
    const first = await server.gql(PREDICT, { input: call }, { token: former.token });
    assert.equal(first.errors, undefined, JSON.stringify(first.errors));

    const UPDATE = 'mutation($s: String!) { updateModel(slug: $s, input: { visibility: PRIVATE }) { visibility } }';
    assert.equal(
      (await server.gql(UPDATE, { s: slug }, { token: owner.token })).data!.updateModel.visibility,
      'PRIVATE',
    );
    const artifact = await uploadWithTfjs(server, buildMlp([8, 4, 2], 11), { token: owner.token });
    await publish(
      server,
      { token: owner.token },
      { model: slug, version: '2.0.0', artifactId: artifact.id, changelog: 'secret roadmap' },
    );
    await createPlan(server, { token: owner.token }, slug, { name: 'Secret plan', pricePerPrediction: '9' });
    const revoked = await transition(server, { token: owner.token }, 'revokeContract', contract.id, 'going private');
    assert.equal(revoked.errors, undefined, JSON.stringify(revoked.errors));

    const after = await seen();
    assert.deepEqual(after, {
      id: contract.id,
      status: 'REVOKED',
      terms: { planName: 'Early access' },
      plan: null,
      model: null,
    });
    // Replaying the key does not hand back the stored answer (and its version) of a model now PRIVATE.
    const replay = await server.gql(PREDICT, { input: call }, { token: former.token });
    assert.equal(replay.errors?.[0]?.extensions?.code, 'NOT_FOUND', JSON.stringify(replay));
    // The owner still sees everything through the same edges.
    const ownerView = await server.gql(
      `query($m: String!) { contractsForModel(model: $m) { id model { visibility versions { changelog } } plan { name } } }`,
      { m: slug },
      { token: owner.token },
    );
    const mine = ownerView.data!.contractsForModel.find((c: any) => c.id === contract.id);
    assert.equal(mine.model.visibility, 'PRIVATE');
    assert.ok(mine.model.versions.some((v: any) => v.changelog === 'secret roadmap'));
    assert.equal(mine.plan.name, 'Early access');
  });
});
