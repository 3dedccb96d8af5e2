// Model.versionsConnection (pages of versions, highest first), Model.viewerCanManage, and ModelVersion.aliases
// batched: a page of versions reads the model's versions and aliases once, however many versions it lists.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, createModel, publish, uploadWithTfjs } from '../support/models.js';
import { statementsDuring } from '../support/statements.js';

const VERSIONS = `query Versions($slug: String!, $status: VersionStatus, $first: Int, $after: String) {
  model(slug: $slug) { versionsConnection(status: $status, first: $first, after: $after) {
    totalCount edges { cursor node { version status } } pageInfo { hasNextPage endCursor } } } }`;
const WITH_ALIASES = `query Aliases($slug: String!) { model(slug: $slug) {
  versionsConnection(first: 100) { edges { node { version aliases sizeBytes model { slug } } } } } }`;
const CAN_MANAGE = 'query($slug: String!) { model(slug: $slug) { viewerCanManage } }';
const SET_ALIAS =
  'mutation($m: String!, $a: String!, $v: String!) { setVersionAlias(model: $m, alias: $a, version: $v) { name } }';
const DEPRECATE = 'mutation($m: String!, $v: String!) { deprecateModelVersion(model: $m, version: $v) { status } }';
const ARCHIVE = 'mutation($m: String!, $v: String!) { archiveModelVersion(model: $m, version: $v) { status } }';
const ADMIN = { email: 'admin@versions.test', password: 'versions admin phrase' };

describe('model versions: pages, capability, batched aliases', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let artifactId: string;
  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    artifactId = (await uploadWithTfjs(server, buildMlp([8, 4, 2], 5), { token: owner.token })).id;
  });
  after(() => server.close());

  const auth = () => ({ token: owner.token });
  /** A model with these versions, published in this order (one upload serves them all). */
  async function modelWith(versions: string[]) {
    const { slug } = await createModel(server, auth(), { task: 'REGRESSION' });
    for (const version of versions) await publish(server, auth(), { model: slug, version, artifactId });
    return slug;
  }
  async function page(slug: string, variables: Record<string, unknown>, token = owner.token) {
    const res = await server.gql(VERSIONS, { slug, ...variables }, { token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.model.versionsConnection;
  }
  const numbers = (connection: any) => connection.edges.map((e: any) => e.node.version);

  it('pages versions highest first in semver order, as `versions` lists them, with the total', async () => {
    const slug = await modelWith(['1.0.0', '1.10.0', '0.9.0', '2.0.0-beta.1', '1.2.0']);
    const expected = ['2.0.0-beta.1', '1.10.0', '1.2.0', '1.0.0', '0.9.0'];
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const connection = await page(slug, { first: 2, after });
      assert.equal(connection.totalCount, 5);
      seen.push(...numbers(connection));
      assert.equal(connection.pageInfo.endCursor, connection.edges.at(-1)?.cursor ?? null);
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    assert.deepEqual(seen, expected);
    const old = await server.gql('query($slug: String!) { model(slug: $slug) { versions { version } } }', { slug });
    assert.deepEqual(
      old.data!.model.versions.map((v: any) => v.version),
      expected,
    );
    assert.deepEqual(numbers(await page(slug, {})), expected, 'first defaults to 20');
  });

  it('filters by status, lists archived versions like `versions` does, and goes on past a status change', async () => {
    const slug = await modelWith(['1.0.0', '1.1.0', '1.2.0', '1.3.0']);
    await server.gql(DEPRECATE, { m: slug, v: '1.1.0' }, auth());
    await server.gql(ARCHIVE, { m: slug, v: '1.0.0' }, auth());
    const consumer = await signUp(server);
    const archived = await page(slug, { status: 'ARCHIVED' }, consumer.token);
    assert.deepEqual([numbers(archived), archived.totalCount], [['1.0.0'], 1]);
    const deprecated = await page(slug, { status: 'DEPRECATED' });
    assert.deepEqual(numbers(deprecated), ['1.1.0']);
    const active = await page(slug, { status: 'ACTIVE', first: 1 });
    assert.deepEqual([numbers(active), active.totalCount, active.pageInfo.hasNextPage], [['1.3.0'], 2, true]);
    // The version the cursor names is deprecated meanwhile: the next page still starts below it.
    await server.gql(DEPRECATE, { m: slug, v: '1.3.0' }, auth());
    const rest = await page(slug, { status: 'ACTIVE', first: 1, after: active.pageInfo.endCursor });
    assert.deepEqual([numbers(rest), rest.pageInfo.hasNextPage], [['1.2.0'], false]);
    const all = await page(slug, { first: 10 });
    assert.deepEqual(
      all.edges.map((e: any) => [e.node.version, e.node.status]),
      [
        ['1.3.0', 'DEPRECATED'],
        ['1.2.0', 'ACTIVE'],
        ['1.1.0', 'DEPRECATED'],
        ['1.0.0', 'ARCHIVED'],
      ],
    );
  });

  it('refuses a page size outside 1 to 100 and cursors it did not issue for this model', async () => {
    const slug = await modelWith(['1.0.0', '2.0.0']);
    const other = await modelWith(['1.0.0', '2.0.0']);
    for (const first of [0, 101, -1]) {
      const error = expectError(await server.gql(VERSIONS, { slug, first }, auth()), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'first');
    }
    const othersCursor = (await page(other, { first: 1 })).pageInfo.endCursor;
    const models = await server.gql('{ models(first: 1) { pageInfo { endCursor } } }');
    for (const after of [
      'garbled',
      Buffer.from('{"id":1}').toString('base64url'),
      othersCursor,
      models.data!.models.pageInfo.endCursor,
    ]) {
      const error = expectError(await server.gql(VERSIONS, { slug, first: 1, after }, auth()), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'after');
    }
  });

  it('tells the caller whether it manages the model: its owner and admins, nobody else', async () => {
    const { slug } = await createModel(server, auth(), { task: 'REGRESSION' });
    const canManage = async (token?: string) =>
      (await server.gql(CAN_MANAGE, { slug }, token ? { token } : {})).data!.model.viewerCanManage;
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const rival = await signUp(server, { role: 'OWNER' });
    const consumer = await signUp(server);
    assert.deepEqual(
      [await canManage(owner.token), await canManage(admin.token), await canManage(rival.token)],
      [true, true, false],
    );
    assert.deepEqual([await canManage(consumer.token), await canManage()], [false, false]);
  });

  it("reads a page's versions and aliases once, not once per version", async () => {
    const run = async (versions: string[]) => {
      const slug = await modelWith(versions);
      await server.gql(SET_ALIAS, { m: slug, a: 'stable', v: versions[0] }, auth());
      let res: any;
      const statements = await statementsDuring(async () => {
        res = await server.gql(WITH_ALIASES, { slug }, auth());
      });
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const reading = (table: string) => statements.filter((sql) => sql.includes(`"${table}"`)).length;
      return {
        edges: res.data.model.versionsConnection.edges,
        versionReads: reading('model_versions'),
        aliasReads: reading('model_aliases'),
      };
    };
    const few = await run(['1.0.0', '2.0.0']);
    const many = await run(['1.0.0', '1.1.0', '1.2.0', '2.0.0-rc.1', '1.3.0', '1.4.0', '1.5.0']);
    assert.deepEqual(
      many.edges.map((e: any) => [e.node.version, e.node.aliases]),
      [
        ['2.0.0-rc.1', []],
        ['1.5.0', ['latest']],
        ['1.4.0', []],
        ['1.3.0', []],
        ['1.2.0', []],
        ['1.1.0', []],
        ['1.0.0', ['stable']],
      ],
    );
    // The page itself and `latest` for every listed version's aliases; the aliases in one more read.
    assert.deepEqual([many.versionReads, many.aliasReads], [2, 1]);
    assert.deepEqual([few.versionReads, few.aliasReads], [many.versionReads, many.aliasReads]);
  });

  it('reads the versions of every listed model once, not once per model', async () => {
    const LISTED = `{ models(first: 30) { edges { node { slug
      versionsConnection(first: 3) { edges { node { version } } } } } } }`;
    const run = async () => {
      let res: any;
      const statements = await statementsDuring(async () => {
        res = await server.gql(LISTED, {}, auth());
      });
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      const versions = new Map<string, string[]>(
        res.data.models.edges.map((e: any) => [
          e.node.slug,
          e.node.versionsConnection.edges.map((v: any) => v.node.version),
        ]),
      );
      return { versions, versionReads: statements.filter((sql) => sql.includes('"model_versions"')).length };
    };
    await modelWith(['1.0.0']);
    const few = await run();
    const added = [
      await modelWith(['1.0.0', '2.0.0']),
      await modelWith(['0.1.0']),
      await modelWith(['3.0.0', '1.0.0']),
    ];
    const many = await run();
    assert.equal(many.versions.size, few.versions.size + 3);
    assert.deepEqual(
      added.map((slug) => many.versions.get(slug)),
      [['2.0.0', '1.0.0'], ['0.1.0'], ['3.0.0', '1.0.0']],
    );
    assert.equal(many.versionReads, few.versionReads);
    assert.equal(many.versionReads, 1);
  });
});
