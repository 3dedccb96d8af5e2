import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { createApiKey, expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  buildMlp,
  CREATE_MODEL,
  createModel,
  PREDICT,
  publish,
  uniqueSlug,
  uploadWithTfjs,
} from '../support/models.js';

const MODEL = `query Model($slug: String!) { model(slug: $slug) { slug visibility owner { id } card { intendedUse limitations }
  versions { version status aliases } aliases { name version { version } } latest: version(version: "latest") { version } } }`;
const MODELS = `query Models($filter: ModelFilter, $first: Int, $after: String) {
  models(filter: $filter, first: $first, after: $after) { edges { cursor node { slug } } pageInfo { hasNextPage endCursor } } }`;
const SET_ALIAS =
  'mutation($m: String!, $a: String!, $v: String!) { setVersionAlias(model: $m, alias: $a, version: $v) { name version { version } } }';
const DEPRECATE =
  'mutation($m: String!, $v: String!) { deprecateModelVersion(model: $m, version: $v) { version status } }';
const ARCHIVE = 'mutation($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { version status } }';
const UPDATE =
  'mutation($s: String!, $i: UpdateModelInput!) { updateModel(slug: $s, input: $i) { slug name visibility tags } }';
const ADMIN = { email: 'admin@catalog.test', password: 'catalog admin phrase' };

describe('models: creation, visibility, listing', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  it('lets owners and admins create models; consumers and keys without MANAGE_MODELS cannot', async () => {
    const consumer = await signUp(server);
    const input = { slug: uniqueSlug(), name: 'X', task: 'REGRESSION', visibility: 'PUBLIC' };
    expectError(await server.gql(CREATE_MODEL, { input }, { token: consumer.token }), 'FORBIDDEN');
    const key = await createApiKey(server, owner.token, ['PREDICT']);
    expectError(await server.gql(CREATE_MODEL, { input }, { apiKey: key.secret }), 'FORBIDDEN');
    const manager = await createApiKey(server, owner.token, ['MANAGE_MODELS']);
    const created = await server.gql(
      CREATE_MODEL,
      { input: { ...input, tags: ['Vision', 'vision', 'mnist'], card: { intendedUse: ' Digits ' } } },
      { apiKey: manager.secret },
    );
    assert.equal(created.errors, undefined);
    assert.deepEqual(created.data!.createModel.tags, ['vision', 'mnist']);
    assert.equal(created.data!.createModel.card.intendedUse, 'Digits');
    assert.equal(created.data!.createModel.owner.id, owner.id);
  });

  it('validates slugs, names and tags; slugs are unique; nothing is stored on bad input', async () => {
    const count = async () => Number((await server.sql.query('SELECT count(*) FROM models')).rows[0].count);
    const before = await count();
    for (const slug of ['ab', 'Has-Caps', '-lead', 'trail-', 'double--dash', '1digit', 'x'.repeat(65), 'spa ce']) {
      const error = expectError(
        await server.gql(
          CREATE_MODEL,
          { input: { slug, name: 'n', task: 'REGRESSION', visibility: 'PUBLIC' } },
          { token: owner.token },
        ),
        'BAD_USER_INPUT',
      );
      assert.equal(error.extensions!.field, 'input.slug', slug);
    }
    expectError(
      await server.gql(
        CREATE_MODEL,
        { input: { slug: uniqueSlug(), name: ' ', task: 'REGRESSION', visibility: 'PUBLIC' } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    expectError(
      await server.gql(
        CREATE_MODEL,
        { input: { slug: uniqueSlug(), name: 'n', task: 'REGRESSION', visibility: 'PUBLIC', tags: ['no spaces!'] } },
        { token: owner.token },
      ),
      'BAD_USER_INPUT',
    );
    assert.equal(await count(), before);
    const model = await createModel(server, { token: owner.token });
    const other = await signUp(server, { role: 'OWNER' });
    expectError(
      await server.gql(
        CREATE_MODEL,
        { input: { slug: model.slug, name: 'n', task: 'REGRESSION', visibility: 'PUBLIC' } },
        { token: other.token },
      ),
      'CONFLICT',
    );
  });

  it('hides PRIVATE models from everyone but their owner and admins', async () => {
    const model = await createModel(server, { token: owner.token }, { visibility: 'PRIVATE' });
    const stranger = await signUp(server, { role: 'OWNER' });
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    assert.equal((await server.gql(MODEL, { slug: model.slug })).data!.model, null);
    assert.equal((await server.gql(MODEL, { slug: model.slug }, { token: stranger.token })).data!.model, null);
    assert.equal(
      (await server.gql(MODEL, { slug: model.slug }, { token: owner.token })).data!.model.visibility,
      'PRIVATE',
    );
    assert.equal((await server.gql(MODEL, { slug: model.slug }, { token: admin.token })).data!.model.slug, model.slug);
    const listed = (token?: string) =>
      server.gql(MODELS, { filter: { search: model.slug }, first: 5 }, token ? { token } : undefined);
    assert.deepEqual((await listed(stranger.token)).data!.models.edges, []);
    assert.equal((await listed(owner.token)).data!.models.edges.length, 1);
    // Managing it is NOT_FOUND for those who cannot see it (its existence stays hidden).
    expectError(
      await server.gql(UPDATE, { s: model.slug, i: { name: 'mine now' } }, { token: stranger.token }),
      'NOT_FOUND',
    );
    const updated = await server.gql(
      UPDATE,
      { s: model.slug, i: { visibility: 'PUBLIC', tags: ['open'] } },
      { token: owner.token },
    );
    assert.equal(updated.data!.updateModel.visibility, 'PUBLIC');
    assert.equal(
      (await server.gql(MODEL, { slug: model.slug }, { token: stranger.token })).data!.model.slug,
      model.slug,
    );
    expectError(
      await server.gql(UPDATE, { s: model.slug, i: { name: 'mine now' } }, { token: stranger.token }),
      'FORBIDDEN',
    );
  });

  it("shows owners' display names to everyone and e-mails only to the account itself and admins (issue 9 row 13)", async () => {
    const model = await createModel(server, { token: owner.token });
    const other = await signUp(server, { role: 'OWNER' });
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const OWNERS = `{ models(first: 100) { edges { node { slug owner { id email displayName } } } } }`;
    const ownerOf = async (token?: string) => {
      const res = await server.gql(OWNERS, {}, token ? { token } : undefined);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const emails = res.data!.models.edges.map((e: any) => e.node.owner.email);
      const mine = res.data!.models.edges.find((e: any) => e.node.slug === model.slug).node.owner;
      return { emails, mine };
    };
    // The attack: an anonymous listing of every owner's address.
    const anonymous = await ownerOf();
    assert.ok(anonymous.emails.length > 0);
    assert.deepEqual(new Set(anonymous.emails), new Set([null]));
    assert.deepEqual(anonymous.mine, { id: owner.id, email: null, displayName: 'Test User' });
    assert.equal((await ownerOf(other.token)).mine.email, null);
    assert.equal((await ownerOf(owner.token)).mine.email, owner.email);
    assert.equal((await ownerOf(admin.token)).mine.email, owner.email);
    assert.equal((await server.gql('{ me { email } }', {}, { token: other.token })).data!.me.email, other.email);
  });

  it('pages through models with cursors and filters by task, tag, owner and words', async () => {
    const lister = await signUp(server, { role: 'OWNER' });
    const tag = `page-${Date.now()}`;
    const slugs: string[] = [];
    for (let i = 0; i < 5; i++) {
      slugs.push(
        (
          await createModel(
            server,
            { token: lister.token },
            {
              tags: [tag],
              task: i % 2 ? 'REGRESSION' : 'TEXT_CLASSIFICATION',
              description: i === 3 ? 'Detects Spam mail' : '',
            },
          )
        ).slug,
      );
    }
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: any = (await server.gql(MODELS, { filter: { tag }, first: 2, after })).data!.models;
      seen.push(...page.edges.map((e: any) => e.node.slug));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } while (after);
    assert.deepEqual(seen, [...slugs].reverse());
    const byTask = (await server.gql(MODELS, { filter: { tag, task: 'REGRESSION' } })).data!.models.edges;
    assert.equal(byTask.length, 2);
    const byOwner = (await server.gql(MODELS, { filter: { owner: lister.id } })).data!.models.edges;
    assert.equal(byOwner.length, 5);
    const byWords = (await server.gql(MODELS, { filter: { tag, search: 'spam MAIL' } })).data!.models.edges;
    assert.deepEqual(
      byWords.map((e: any) => e.node.slug),
      [slugs[3]],
    );
    expectError(await server.gql(MODELS, { after: 'garbage' }), 'BAD_USER_INPUT');
    expectError(await server.gql(MODELS, { first: 0 }), 'BAD_USER_INPUT');
    expectError(await server.gql(MODELS, { first: 101 }), 'BAD_USER_INPUT');
  });
});

describe('versions: aliases and life cycle', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  const rows = [Array.from({ length: 6 }, (_, i) => i / 6)];
  const predict = (version: string) =>
    server.gql(PREDICT, { input: { model: slug, version, inputs: rows } }, { token: owner.token });

  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await createModel(server, { token: owner.token })).slug;
    for (const [version, seed] of [
      ['1.0.0', 1],
      ['1.1.0', 2],
      ['1.2.0-beta.1', 3],
    ] as const) {
      const artifact = await uploadWithTfjs(server, buildMlp([6, 2], seed), { token: owner.token });
      await publish(
        server,
        { token: owner.token },
        { model: slug, version, artifactId: artifact.id, labels: ['no', 'yes'] },
      );
    }
  });
  after(() => server.close());

  it('points latest at the highest release, and serves each version by number or alias', async () => {
    const model = (await server.gql(MODEL, { slug }, { token: owner.token })).data!.model;
    assert.equal(model.latest.version, '1.1.0');
    assert.deepEqual(
      model.versions.map((v: any) => v.version),
      ['1.2.0-beta.1', '1.1.0', '1.0.0'],
    );
    assert.equal((await predict('latest')).data!.predict.modelVersion.version, '1.1.0');
    assert.equal((await predict('1.2.0-beta.1')).data!.predict.modelVersion.version, '1.2.0-beta.1');

    const set = await server.gql(SET_ALIAS, { m: slug, a: 'Stable', v: '1.0.0' }, { token: owner.token });
    assert.deepEqual(set.data!.setVersionAlias, { name: 'stable', version: { version: '1.0.0' } });
    assert.equal((await predict('stable')).data!.predict.modelVersion.version, '1.0.0');
    await server.gql(SET_ALIAS, { m: slug, a: 'canary', v: '1.2.0-beta.1' }, { token: owner.token });
    const aliases = (await server.gql(MODEL, { slug }, { token: owner.token })).data!.model.aliases;
    assert.deepEqual(
      aliases.map((a: any) => [a.name, a.version.version]),
      [
        ['latest', '1.1.0'],
        ['canary', '1.2.0-beta.1'],
        ['stable', '1.0.0'],
      ],
    );

    expectError(
      await server.gql(SET_ALIAS, { m: slug, a: 'latest', v: '1.0.0' }, { token: owner.token }),
      'BAD_USER_INPUT',
    );
    expectError(
      await server.gql(SET_ALIAS, { m: slug, a: 'bad alias', v: '1.0.0' }, { token: owner.token }),
      'BAD_USER_INPUT',
    );
    expectError(await server.gql(SET_ALIAS, { m: slug, a: 'x', v: '9.9.9' }, { token: owner.token }), 'NOT_FOUND');
    expectError(await predict('no-such-alias'), 'NOT_FOUND');
    const stranger = await signUp(server, { role: 'OWNER' });
    expectError(
      await server.gql(SET_ALIAS, { m: slug, a: 'mine', v: '1.0.0' }, { token: stranger.token }),
      'FORBIDDEN',
    );
  });

  it('shows watermark details to the owner; others see only that a version is marked (issue 9 row 15)', async () => {
    const marked = (await createModel(server, { token: owner.token })).slug;
    const artifact = await uploadWithTfjs(server, buildMlp([784, 16, 10], 5), { token: owner.token });
    await publish(
      server,
      { token: owner.token },
      { model: marked, version: '1.0.0', artifactId: artifact.id, watermark: true },
    );
    const WATERMARK = `query($s: String!) { model(slug: $s) { versions { watermark {
      marked tensor margin relativeChange maxChange bits agreement accuracyBefore accuracyAfter evaluationSamples shapedWith } } } }`;
    const report = async (token?: string) =>
      (await server.gql(WATERMARK, { s: marked }, token ? { token } : undefined)).data!.model.versions[0].watermark;
    const mine = await report(owner.token);
    assert.equal(mine.marked, true);
    assert.equal(typeof mine.tensor, 'string');
    assert.ok(mine.margin > 0 && mine.bits > 0);
    const stranger = await signUp(server, { role: 'OWNER' });
    for (const seen of [await report(), await report(stranger.token)]) {
      assert.deepEqual(seen, {
        marked: true,
        tensor: null,
        margin: null,
        relativeChange: null,
        maxChange: null,
        bits: null,
        agreement: null,
        accuracyBefore: null,
        accuracyAfter: null,
        evaluationSamples: null,
        shapedWith: null,
      });
    }
  });

  it('serves a deprecated version with a warning, and stops serving an archived one', async () => {
    const deprecated = await server.gql(DEPRECATE, { m: slug, v: '1.0.0' }, { token: owner.token });
    assert.equal(deprecated.data!.deprecateModelVersion.status, 'DEPRECATED');
    const warned = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
      body: JSON.stringify({ query: PREDICT, variables: { input: { model: slug, version: '1.0.0', inputs: rows } } }),
    });
    const body = (await warned.json()) as any;
    assert.equal(body.data.predict.modelVersion.version, '1.0.0');
    assert.match(body.extensions.warnings[0], /deprecated/);

    await server.gql(ARCHIVE, { m: slug, v: '1.1.0' }, { token: owner.token });
    const archived = expectError(await predict('1.1.0'), 'FORBIDDEN');
    assert.equal(archived.extensions!.reason, 'VERSION_ARCHIVED');
    // latest moves down past the archived release.
    assert.equal((await predict('latest')).data!.predict.modelVersion.version, '1.0.0');
    expectError(await server.gql(DEPRECATE, { m: slug, v: '1.1.0' }, { token: owner.token }), 'BAD_USER_INPUT');
    const versions = (await server.gql(MODEL, { slug }, { token: owner.token })).data!.model.versions;
    assert.deepEqual(
      versions.map((v: any) => [v.version, v.status]),
      [
        ['1.2.0-beta.1', 'ACTIVE'],
        ['1.1.0', 'ARCHIVED'],
        ['1.0.0', 'DEPRECATED'],
      ],
    );
    const audit = await server.sql.query(
      `SELECT action FROM audit_events WHERE action LIKE 'model_version.%' ORDER BY id`,
    );
    assert.deepEqual(audit.rows.map((r) => r.action).slice(-2), ['model_version.deprecated', 'model_version.archived']);
  });
});
