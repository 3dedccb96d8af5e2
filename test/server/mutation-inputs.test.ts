import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeExecutableSchema } from '@graphql-tools/schema';
import { withMergedMutationInputs } from '../../src/server/mutation-inputs.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { publish, publishedMlp, uploadWithTfjs } from '../support/models.js';
import { CONTRACT_FIELDS, createPlan } from '../support/licensing.js';

const MY_CONTRACTS = '{ myContracts { id status statusReason } }';

describe('mutation input objects', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let consumer: SignedUpUser;
  let slug: string;

  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    consumer = await signUp(server);
    const published = await publishedMlp(server, { token: owner.token });
    slug = published.model.slug;
    const artifact = await uploadWithTfjs(server, published.tfModel, { token: owner.token });
    await publish(server, { token: owner.token }, { model: slug, version: '1.1.0', artifactId: artifact.id });
  });
  after(() => server.close());

  /** A PENDING contract of `consumer` on the test model, taken with the input form. */
  async function pendingContract(): Promise<string> {
    const plan = await createPlan(server, { token: owner.token }, slug, { requiresApproval: true });
    const res = await server.gql(
      `mutation($i: AcceptLicenseInput) { acceptLicense(input: $i) { ${CONTRACT_FIELDS} } }`,
      { i: { planId: plan.id } },
      { token: consumer.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.equal(res.data!.acceptLicense.status, 'PENDING');
    return res.data!.acceptLicense.id;
  }

  const statusOf = async (id: string) => {
    const contracts = (await server.gql(MY_CONTRACTS, {}, { token: consumer.token })).data!.myContracts as {
      id: string;
      status: string;
      statusReason: string | null;
    }[];
    const { status, statusReason } = contracts.find((contract) => contract.id === id)!;
    return { status, statusReason };
  };

  it('takes contract transitions, API keys, aliases and model updates in the input form', async () => {
    const id = await pendingContract();
    const approved = await server.gql(
      `mutation($id: ID!) { approveContract(input: { id: $id }) { status } }`,
      { id },
      { token: owner.token },
    );
    assert.equal(approved.errors, undefined, JSON.stringify(approved.errors));
    assert.equal(approved.data!.approveContract.status, 'ACTIVE');
    const suspended = await server.gql(
      `mutation($i: SuspendContractInput) { suspendContract(input: $i) { status statusReason } }`,
      { i: { id, reason: 'late payment' } },
      { token: owner.token },
    );
    assert.equal(suspended.errors, undefined, JSON.stringify(suspended.errors));
    assert.deepEqual(suspended.data!.suspendContract, { status: 'SUSPENDED', statusReason: 'late payment' });

    const key = await server.gql(
      'mutation($i: CreateApiKeyInput) { createApiKey(input: $i) { secret apiKey { name scopes } } }',
      { i: { name: 'input form', scopes: ['PREDICT'] } },
      { token: consumer.token },
    );
    assert.equal(key.errors, undefined, JSON.stringify(key.errors));
    assert.deepEqual(key.data!.createApiKey.apiKey, { name: 'input form', scopes: ['PREDICT'] });

    const alias = await server.gql(
      'mutation($i: SetVersionAliasInput) { setVersionAlias(input: $i) { name version { version } } }',
      { i: { model: slug, alias: 'stable', version: '1.0.0' } },
      { token: owner.token },
    );
    assert.equal(alias.errors, undefined, JSON.stringify(alias.errors));
    assert.deepEqual(alias.data!.setVersionAlias, { name: 'stable', version: { version: '1.0.0' } });

    const updated = await server.gql(
      'mutation($i: UpdateModelInput!) { updateModel(input: $i) { slug name } }',
      { i: { slug, name: 'Renamed by input' } },
      { token: owner.token },
    );
    assert.equal(updated.errors, undefined, JSON.stringify(updated.errors));
    assert.deepEqual(updated.data!.updateModel, { slug, name: 'Renamed by input' });
  });

  it('refuses a field given both as the deprecated argument and in input, changing nothing', async () => {
    const id = await pendingContract();
    const both = await server.gql(
      'mutation($id: ID!) { rejectContract(id: $id, input: { id: $id, reason: "no" }) { status } }',
      { id },
      { token: owner.token },
    );
    assert.equal(expectError(both, 'BAD_USER_INPUT').extensions!.field, 'input.id');
    assert.deepEqual(await statusOf(id), { status: 'PENDING', statusReason: null });

    const slugTwice = await server.gql(
      'mutation($s: String!) { updateModel(slug: $s, input: { slug: $s, name: "Twice" }) { name } }',
      { s: slug },
      { token: owner.token },
    );
    assert.equal(expectError(slugTwice, 'BAD_USER_INPUT').extensions!.field, 'input.slug');
  });

  it('names a required field given in neither form, changing nothing', async () => {
    const id = await pendingContract();
    const noReason = await server.gql(
      'mutation($id: ID) { rejectContract(id: $id) { status } }',
      { id },
      {
        token: owner.token,
      },
    );
    const error = expectError(noReason, 'BAD_USER_INPUT');
    assert.equal(error.extensions!.field, 'input.reason');
    assert.match(error.message, /input\.reason is required/);
    assert.deepEqual(await statusOf(id), { status: 'PENDING', statusReason: null });

    const noSlug = await server.gql(
      'mutation { updateModel(input: { name: "Nobody\'s" }) { name } }',
      {},
      {
        token: owner.token,
      },
    );
    assert.equal(expectError(noSlug, 'BAD_USER_INPUT').extensions!.field, 'input.slug');
    const nothing = await server.gql('mutation { setVersionAlias { name } }', {}, { token: owner.token });
    assert.equal(expectError(nothing, 'BAD_USER_INPUT').extensions!.field, 'input.model');
  });

  it('checks who may call a mutation before its input', async () => {
    const res = await server.gql('mutation { setUserRole(userId: "1", input: { userId: "1", role: ADMIN }) { id } }');
    expectError(res, 'UNAUTHENTICATED');
  });

  it('marks every old argument deprecated in introspection, and lists only input by default', async () => {
    const res = await server.gql(`{ __type(name: "Mutation") { fields {
      name current: args { name } all: args(includeDeprecated: true) { name isDeprecated deprecationReason } } } }`);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    type Arg = { name: string; isDeprecated: boolean; deprecationReason: string | null };
    const fields = res.data!.__type.fields as { name: string; current: { name: string }[]; all: Arg[] }[];
    const withArguments = fields.filter((field) => field.all.length > 0);
    assert.ok(withArguments.length >= 40, `${withArguments.length} mutations with arguments`);
    for (const field of withArguments) {
      assert.deepEqual(
        field.current.map((arg) => arg.name),
        ['input'],
        field.name,
      );
      for (const arg of field.all.filter((a) => a.name !== 'input')) {
        assert.deepEqual([arg.isDeprecated, arg.deprecationReason], [true, `Use input.${arg.name}.`], field.name);
      }
    }
    const rejectContract = fields.find((field) => field.name === 'rejectContract')!;
    assert.deepEqual(
      rejectContract.all.map((arg) => arg.name),
      ['id', 'reason', 'input'],
    );
  });
});

describe('the boot check on mutation arguments', () => {
  const QUERY = 'type Query { ok: Boolean }';
  const build =
    (mutation: string, inputs = 'input CloseInput { id: ID!, reason: String }') =>
    () =>
      withMergedMutationInputs(
        makeExecutableSchema({ typeDefs: `${QUERY}\n${inputs}\ntype Mutation { ${mutation} }` }),
      );

  it('accepts deprecated, nullable arguments that match input fields by name and type', () => {
    assert.doesNotThrow(
      build(
        'close(id: ID @deprecated(reason: "Use input.id."), reason: String @deprecated, input: CloseInput): Boolean',
      ),
    );
    assert.doesNotThrow(build('noArguments: Boolean'));
  });

  it('refuses a schema whose old arguments drifted from the input type', () => {
    const refusals: [string, RegExp][] = [
      ['close(id: String @deprecated, input: CloseInput): Boolean', /close\(id\) is String but CloseInput\.id is ID!/],
      ['close(ident: ID @deprecated, input: CloseInput): Boolean', /close\(ident\) has no field of the same name/],
      ['close(id: ID, input: CloseInput): Boolean', /close\(id\) must be nullable and @deprecated/],
      ['close(id: ID): Boolean', /close takes arguments, so it must take them in an input object named `input`/],
      ['close(id: ID @deprecated, input: String): Boolean', /input object named `input`/],
    ];
    for (const [mutation, message] of refusals) assert.throws(build(mutation), message, mutation);
  });
});
