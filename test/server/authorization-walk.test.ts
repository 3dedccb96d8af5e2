// Authorization on every edge: every Query field is called with a selection that reaches every object-typed
// field of the schema (built from schema.graphql itself, so new types and fields are walked without editing
// this test), as anonymous, consumers, another owner and API keys of each scope, over a seeded world. No
// answer may hold a PRIVATE model, an e-mail address but the caller's own, a watermark detail, or another
// tenant's row; the model's owner and an admin are walked too, to prove the walk reaches what it guards.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  buildSchema as parseSdl,
  getNamedType,
  isLeafType,
  isNonNullType,
  isObjectType,
  isUnionType,
  type GraphQLField,
  type GraphQLObjectType,
} from 'graphql';
import { SCHEMA_PATH } from '../../src/server/schema.js';
import { startTestServer, type Credentials, type GraphQLResponse, type TestServer } from '../support/server.js';
import { createApiKey, logIn, signUp, type SignedUpUser } from '../support/fixtures.js';
import { buildMlp, createModel, DIGITS, PREDICT, publish, randomRows, uploadWithTfjs } from '../support/models.js';
import { accept, createPlan, transition } from '../support/licensing.js';
import { datasetId, evaluate, waitForEvaluation } from '../evaluation/support.js';
import { createBatch, waitForBatch } from '../predictions/batch-support.js';

const ADMIN = { email: 'admin@walk.test', password: 'walk admin phrase' };
const SCOPES = ['PREDICT', 'READ_USAGE', 'MANAGE_MODELS', 'DOWNLOAD'] as const;
const schema = parseSdl(readFileSync(SCHEMA_PATH, 'utf8'));

/** Values for required arguments of nested fields; a new one makes the walk fail until it is given here. */
const NESTED_ARGUMENTS: Record<string, string> = { 'Model.version.version': '"latest"' };

function nestedArguments(type: GraphQLObjectType, field: GraphQLField<unknown, unknown>): string {
  const required = field.args.filter((arg) => isNonNullType(arg.type) && arg.defaultValue === undefined);
  if (required.length === 0) return '';
  const given = required.map((arg) => {
    const value = NESTED_ARGUMENTS[`${type.name}.${field.name}.${arg.name}`];
    assert.ok(value, `give the walk a value for ${type.name}.${field.name}(${arg.name}:)`);
    return `${arg.name}: ${value}`;
  });
  return `(${given.join(', ')})`;
}

/**
 * Every field of `type`; object-typed ones expanded the same way, except a type already open on the path
 * (cycles such as Model → versions → model), which gets its leaf fields. So every edge is walked once per path.
 */
function selectionOf(type: GraphQLObjectType, path: string[], walked: Set<string>): string {
  const parts: string[] = [];
  for (const field of Object.values(type.getFields())) {
    const target = getNamedType(field.type);
    const call = `${field.name}${nestedArguments(type, field)}`;
    walked.add(`${type.name}.${field.name}`);
    if (isLeafType(target)) parts.push(call);
    else if (isObjectType(target) && path.includes(target.name)) {
      const leaves = Object.values(target.getFields()).filter(
        (f) => isLeafType(getNamedType(f.type)) && f.args.length === 0,
      );
      parts.push(`${call} { ${leaves.map((f) => f.name).join(' ')} }`);
    } else if (isObjectType(target)) parts.push(`${call} { ${selectionOf(target, [...path, target.name], walked)} }`);
    else if (isUnionType(target)) {
      const members = target
        .getTypes()
        .map((member) => `... on ${member.name} { ${selectionOf(member, [...path, member.name], walked)} }`);
      parts.push(`${call} { __typename ${members.join(' ')} }`);
    } else assert.fail(`the walk does not know how to select ${type.name}.${field.name} (${String(field.type)})`);
  }
  return parts.join(' ');
}

interface World {
  admin: SignedUpUser;
  owner: SignedUpUser;
  otherOwner: SignedUpUser;
  consumer: SignedUpUser;
  otherConsumer: SignedUpUser;
  publicSlug: string;
  privateSlug: string;
  otherSlug: string;
  /** Strings only the owner (and admins) may see: the PRIVATE model's ids, slug, versions, plans, changelog. */
  privateMarks: string[];
  contracts: { consumer: string; id: string }[];
  keyIds: { user: string; id: string }[];
  tensor: string;
  /** The consumer's data set, evaluation, comparison, asynchronous and batch predictions: theirs and admins' only. */
  evaluationRows: { dataset: string; evaluation: string; comparison: string; prediction: string; batch: string };
}

interface Viewer {
  name: string;
  auth: Credentials | undefined;
  /** The account behind the credentials (null: anonymous). */
  user: SignedUpUser | null;
  /** Owner of the seeded models, or admin: may see everything about them. */
  managesModels: boolean;
  isAdmin: boolean;
}

/** Every argument set each Query field is called with; fields with no required arguments also run bare. */
function rootArguments(world: World): Record<string, Record<string, unknown>[]> {
  const slugs = [world.publicSlug, world.privateSlug, world.otherSlug];
  return {
    models: [{ first: 100 }],
    model: slugs.map((slug) => ({ slug })),
    contractsForModel: slugs.map((model) => ({ model })),
    contractsForModelConnection: slugs.map((model) => ({ model, first: 100 })),
    usage: ['DAY', 'MODEL', 'CONTRACT', 'CONSUMER'].map((groupBy) => ({ filter: { groupBy } })),
    billingStatement: world.contracts.map(({ id }) => ({
      contractId: id,
      period: new Date().toISOString().slice(0, 7),
    })),
    auditEvents: [{ first: 500 }],
    // A certificate is a bearer document its holder shows to third parties: its verification is public by design.
    verifyLicenseCertificate: [{ token: 'not-a-certificate' }],
    verifyWatermark: [{ artifactId: '00000000-0000-4000-8000-000000000000' }],
    dataset: [{ id: world.evaluationRows.dataset }],
    evaluation: [{ id: world.evaluationRows.evaluation }],
    comparison: [{ id: world.evaluationRows.comparison }],
    prediction: [{ id: world.evaluationRows.prediction }],
    batchPrediction: [{ id: world.evaluationRows.batch }],
  };
}

function operations(world: World, walked: Set<string>): { field: string; query: string; variables: object }[] {
  const query = schema.getQueryType()!;
  const argumentSets = rootArguments(world);
  return Object.values(query.getFields()).flatMap((field) => {
    walked.add(`Query.${field.name}`);
    const target = getNamedType(field.type);
    const selection = isObjectType(target) ? ` { ${selectionOf(target, [target.name], walked)} }` : '';
    const required = field.args.filter((arg) => isNonNullType(arg.type) && arg.defaultValue === undefined);
    const sets = argumentSets[field.name] ?? [];
    assert.ok(required.length === 0 || sets.length > 0, `give the walk arguments for Query.${field.name}`);
    return (required.length === 0 ? [{}, ...sets] : sets).map((variables) => {
      const args = field.args.filter((arg) => arg.name in variables);
      const declared = args.map((arg) => `$${arg.name}: ${String(arg.type)}`).join(', ');
      const passed = args.map((arg) => `${arg.name}: $${arg.name}`).join(', ');
      return {
        field: field.name,
        query: `query Walk${declared ? `(${declared})` : ''} { ${field.name}${passed ? `(${passed})` : ''}${selection} }`,
        variables,
      };
    });
  });
}

/** Every string in an answer (data and error messages), and every object, with its path. */
function contents(value: unknown, path = '', strings: [string, string][] = [], objects: [string, any][] = []) {
  if (typeof value === 'string') strings.push([path, value]);
  else if (Array.isArray(value)) value.forEach((item, i) => contents(item, `${path}[${i}]`, strings, objects));
  else if (value && typeof value === 'object') {
    objects.push([path, value]);
    for (const [key, item] of Object.entries(value)) contents(item, `${path}.${key}`, strings, objects);
  }
  return { strings, objects };
}

describe('authorization on every edge: a walk of the whole schema', () => {
  let server: TestServer;
  let world: World;
  let viewers: Viewer[];
  const walked = new Set<string>();

  before(async () => {
    // The walk's selections are deeper and larger than any client's: the request limits are raised for it alone.
    server = await startTestServer({
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      GRAPHQL_MAX_DEPTH: '30',
      GRAPHQL_MAX_COST: '1000000',
      GRAPHQL_MAX_TOKENS: '100000',
    });
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    const owner = await signUp(server, { role: 'OWNER' });
    const otherOwner = await signUp(server, { role: 'OWNER' });
    const consumer = await signUp(server);
    const otherConsumer = await signUp(server);
    const asOwner = { token: owner.token };

    // A PUBLIC model with a watermarked version and a plan both consumers hold, and one call each.
    const publicSlug = (await createModel(server, asOwner)).slug;
    const marked = await uploadWithTfjs(server, buildMlp([784, 16, 10], 21), asOwner);
    await publish(server, asOwner, {
      model: publicSlug,
      version: '1.0.0',
      artifactId: marked.id,
      labels: DIGITS,
      watermark: true,
    });
    const open = await createPlan(server, asOwner, publicSlug, { downloadAllowed: true });
    const contracts = [
      { consumer: consumer.id, id: (await accept(server, { token: consumer.token }, open.id)).id },
      { consumer: otherConsumer.id, id: (await accept(server, { token: otherConsumer.token }, open.id)).id },
    ];
    for (const user of [consumer, otherConsumer]) {
      const res = await server.gql(
        PREDICT,
        { input: { model: publicSlug, inputs: randomRows(1, 784, 3) } },
        { token: user.token },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }

    // A model the consumer licensed while it was PUBLIC; then made PRIVATE, given a new version and plan, and
    // the contract revoked.
    const privateModel = await createModel(server, asOwner);
    const early = await uploadWithTfjs(server, buildMlp([8, 4, 2], 22), asOwner);
    const v1 = await publish(server, asOwner, { model: privateModel.slug, version: '1.0.0', artifactId: early.id });
    const earlyPlan = await createPlan(server, asOwner, privateModel.slug, { name: 'Early access' });
    const revoked = await accept(server, { token: consumer.token }, earlyPlan.id);
    contracts.push({ consumer: consumer.id, id: revoked.id });
    const hide = await server.gql(
      'mutation($s: String!) { updateModel(slug: $s, input: { visibility: PRIVATE }) { visibility } }',
      { s: privateModel.slug },
      asOwner,
    );
    assert.equal(hide.data!.updateModel.visibility, 'PRIVATE');
    const later = await uploadWithTfjs(server, buildMlp([8, 4, 2], 23), asOwner);
    const v2 = await publish(server, asOwner, {
      model: privateModel.slug,
      version: '2.0.0',
      artifactId: later.id,
      changelog: 'walk-secret-roadmap',
    });
    const secretPlan = await createPlan(server, asOwner, privateModel.slug, { name: 'walk-secret-plan' });
    assert.equal((await transition(server, asOwner, 'revokeContract', revoked.id, 'private now')).errors, undefined);

    // The consumer evaluates the PUBLIC model on a data set of its own, and compares two of its versions.
    const second = await uploadWithTfjs(server, buildMlp([784, 16, 10], 24), asOwner);
    await publish(server, asOwner, { model: publicSlug, version: '1.1.0', artifactId: second.id, labels: DIGITS });
    const asConsumer = { token: consumer.token };
    const rows = randomRows(3, 784, 5).map((input, i) => JSON.stringify({ input, label: DIGITS[i] }));
    const dataset = await datasetId(server, asConsumer, rows.join('\n'));
    const evaluation = (await evaluate(server, asConsumer, { model: publicSlug, version: '1.0.0', dataset })).id;
    await waitForEvaluation(server, asConsumer, evaluation);
    const compared = await server.gql(
      `mutation($input: CompareModelVersionsInput!) { compareModelVersions(input: $input) { id a { id } } }`,
      { input: { model: publicSlug, a: '1.0.0', b: '1.1.0', dataset } },
      asConsumer,
    );
    assert.equal(compared.errors, undefined, JSON.stringify(compared.errors));
    await waitForEvaluation(server, asConsumer, compared.data!.compareModelVersions.a.id);
    const queued = await server.gql(
      `mutation($input: CreatePredictionInput!) { createPrediction(input: $input) { id } }`,
      { input: { model: publicSlug, inputs: randomRows(1, 784, 6) } },
      asConsumer,
    );
    assert.equal(queued.errors, undefined, JSON.stringify(queued.errors));
    const prediction = queued.data!.createPrediction.id as string;
    for (let status = 'QUEUED'; status === 'QUEUED' || status === 'RUNNING';) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const polled = await server.gql(
        'query($id: ID!) { prediction(id: $id) { status } }',
        { id: prediction },
        asConsumer,
      );
      status = polled.data!.prediction.status;
    }
    // And runs a batch prediction over the same rows (their labels ignored).
    const batch = await createBatch(server.url, asConsumer, { model: publicSlug, version: '1.0.0', dataset });
    await waitForBatch(server.url, asConsumer, batch.id);
    const evaluationRows = {
      dataset,
      evaluation,
      comparison: compared.data!.compareModelVersions.id as string,
      prediction,
      batch: batch.id as string,
    };

    const otherSlug = (await createModel(server, { token: otherOwner.token })).slug;
    const keyIds: World['keyIds'] = [];
    viewers = [
      { name: 'anonymous', auth: undefined, user: null, managesModels: false, isAdmin: false },
      ...[
        ['consumer', consumer],
        ['other consumer', otherConsumer],
        ['other owner', otherOwner],
      ].map(([name, user]) => ({
        name: name as string,
        auth: { token: (user as SignedUpUser).token },
        user: user as SignedUpUser,
        managesModels: false,
        isAdmin: false,
      })),
      { name: 'owner', auth: asOwner, user: owner, managesModels: true, isAdmin: false },
      { name: 'admin', auth: { token: admin.token }, user: admin, managesModels: true, isAdmin: true },
    ];
    for (const [name, user] of [
      ['consumer', consumer],
      ['other owner', otherOwner],
    ] as const) {
      for (const scope of SCOPES) {
        const key = await createApiKey(server, user.token, [scope], `walk ${scope}`);
        keyIds.push({ user: user.id, id: key.apiKey.id });
        viewers.push({
          name: `${name}'s ${scope} key`,
          auth: { apiKey: key.secret },
          user,
          managesModels: false,
          isAdmin: false,
        });
      }
    }
    const report = await server.gql(
      `query($s: String!) { model(slug: $s) { versions { watermark { tensor } } } }`,
      { s: publicSlug },
      asOwner,
    );
    world = {
      admin,
      owner,
      otherOwner,
      consumer,
      otherConsumer,
      publicSlug,
      privateSlug: privateModel.slug,
      otherSlug,
      privateMarks: [
        privateModel.id,
        privateModel.slug,
        v1.id,
        v2.id,
        earlyPlan.id,
        secretPlan.id,
        'walk-secret-roadmap',
        'walk-secret-plan',
      ],
      contracts,
      keyIds,
      tensor: report.data!.model.versions.find((v: { watermark: { tensor: string | null } }) => v.watermark.tensor)
        .watermark.tensor,
      evaluationRows,
    };
    assert.equal(typeof world.tensor, 'string');
  });
  after(() => server.close());

  it('reaches no PRIVATE model, no e-mail but one’s own, no watermark detail and no other tenant’s row', async () => {
    const ops = operations(world, walked);
    const everyone = [world.admin, world.owner, world.otherOwner, world.consumer, world.otherConsumer];
    const seenBy = new Map<string, string[]>();
    for (const viewer of viewers) {
      const own = viewer.user?.id;
      const forbidden: [string, string][] = [
        ...everyone
          .filter((user) => !viewer.isAdmin && user.id !== own)
          .map((user) => [user.email, `${user === world.admin ? 'admin' : 'an'} e-mail address`] as [string, string]),
        ...(viewer.managesModels
          ? []
          : world.privateMarks.map((mark) => [mark, 'the PRIVATE model'] as [string, string])),
        ...(viewer.managesModels ? [] : [[world.tensor, 'the marked tensor'] as [string, string]]),
        ...world.contracts
          .filter((c) => !viewer.managesModels && c.consumer !== own)
          .map((c) => [c.id, "another tenant's contract"] as [string, string]),
        ...[world.consumer, world.otherConsumer]
          .filter((user) => !viewer.managesModels && user.id !== own)
          .map((user) => [user.id, "another consumer's account"] as [string, string]),
        ...world.keyIds
          .filter((key) => !viewer.isAdmin && key.user !== own)
          .map((key) => [key.id, "another account's API key"] as [string, string]),
        ...(viewer.isAdmin || own === world.consumer.id
          ? []
          : Object.values(world.evaluationRows).map((id) => [id, "another account's evaluation"] as [string, string])),
      ];
      const seen: string[] = [];
      for (const op of ops) {
        const res: GraphQLResponse = await server.gql(op.query, op.variables as Record<string, unknown>, viewer.auth);
        const where = `${viewer.name}, ${op.field}(${JSON.stringify(op.variables)})`;
        assert.ok(res.status < 500, `${where}: HTTP ${res.status} ${JSON.stringify(res.errors)}`);
        for (const error of res.errors ?? []) {
          // Refusals happen at the root; an edge that errors is a visibility rule applied in the wrong place.
          assert.ok((error.path ?? []).length <= 1, `${where}: error inside the answer ${JSON.stringify(error)}`);
          assert.notEqual(error.extensions?.code, 'INTERNAL_SERVER_ERROR', `${where}: ${error.message}`);
        }
        const { strings, objects } = contents({ data: res.data, errors: res.errors?.map((e) => e.message) });
        for (const [path, text] of strings) {
          seen.push(text);
          for (const [secret, what] of forbidden) {
            assert.ok(!text.includes(secret), `${where}: ${what} at ${path}`);
          }
        }
        for (const [path, object] of objects) {
          if (!viewer.managesModels) {
            assert.notEqual(object.visibility, 'PRIVATE', `${where}: a PRIVATE model at ${path}`);
            if (path.endsWith('.watermark')) {
              const details = Object.entries(object).filter(([key, value]) => key !== 'marked' && value !== null);
              assert.deepEqual(details, [], `${where}: watermark details at ${path}`);
            }
          }
        }
      }
      seenBy.set(viewer.name, seen);
    }

    // The walk reaches what it guards: the owner sees the PRIVATE model, the mark and its own address; an
    // admin every address; a consumer its own contracts.
    const saw = (viewer: string, text: string) => seenBy.get(viewer)!.some((s) => s.includes(text));
    for (const mark of [world.privateSlug, 'walk-secret-roadmap', 'walk-secret-plan', world.tensor, world.owner.email])
      assert.ok(saw('owner', mark), `the owner's walk reaches ${mark}`);
    for (const user of [world.owner, world.consumer, world.otherOwner])
      assert.ok(saw('admin', user.email), `the admin's walk reaches ${user.email}`);
    for (const contract of world.contracts.filter((c) => c.consumer === world.consumer.id))
      assert.ok(saw('consumer', contract.id), 'the consumer sees its own contracts');
    assert.ok(saw('consumer', world.publicSlug) && saw('anonymous', world.publicSlug));
    for (const id of Object.values(world.evaluationRows)) {
      assert.ok(saw('consumer', id) && saw('admin', id), 'the consumer and admins see its evaluations');
    }
  });

  it('walks every object-typed field of every type the Query reaches', () => {
    const reachable = new Set<string>();
    const visit = (type: GraphQLObjectType) => {
      if (reachable.has(type.name)) return;
      reachable.add(type.name);
      for (const field of Object.values(type.getFields())) {
        const target = getNamedType(field.type);
        if (isObjectType(target)) visit(target);
      }
    };
    visit(schema.getQueryType()!);
    const edges = [...reachable].flatMap((name) =>
      Object.values((schema.getType(name) as GraphQLObjectType).getFields())
        .filter((field) => isObjectType(getNamedType(field.type)))
        .map((field) => `${name}.${field.name}`),
    );
    assert.ok(edges.length > 20);
    assert.deepEqual(
      edges.filter((edge) => !walked.has(edge)),
      [],
    );
    for (const type of ['Model', 'ModelVersion', 'LicensePlan', 'Contract', 'User', 'WatermarkReport'])
      assert.ok(reachable.has(type), type);
  });
});
