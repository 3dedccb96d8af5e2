// ModelVersion.io: the stored signature, typed (each input with its preprocessing as a union member, each
// output), checked against the `signature` JSON it is read from for image, text, tabular and two-headed models.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  buildMlp,
  buildTextClassifier,
  buildTwoHeaded,
  createModel,
  DIGITS,
  publish,
  publishedTabular,
  TWO_HEADED_SIGNATURE,
  uploadWithTfjs,
} from '../support/models.js';
import { parseSignature, storedSignature, typedSignature } from '../../src/models/signature.js';

const IO = `query IO($slug: String!, $version: String!) { model(slug: $slug) { version(version: $version) {
  signature io { named
    inputs { name shape dtype range { min max } preprocessing { __typename
      ... on NoPreprocessing { none }
      ... on ImagePreprocessing { height width channels scaling resize }
      ... on TextPreprocessing { maxLength lowercase vocabularySize }
      ... on TabularPreprocessing { features { name mean std } } } }
    outputs { name kind labels size } } } } }`;

/** What `io` must say, read from the stored JSON independently of the server's conversion. */
function expectedIo(signature: any) {
  const named = 'inputs' in signature;
  const inputs = named ? signature.inputs : [{ ...signature.input, name: 'input' }];
  const outputs = named ? signature.outputs : [{ ...signature.output, name: 'output' }];
  const preprocessing = (p: any) =>
    p.kind === 'image'
      ? {
          __typename: 'ImagePreprocessing',
          height: p.height,
          width: p.width,
          channels: p.channels,
          scaling: p.scaling.toUpperCase(),
          resize: (p.resize ?? 'stretch').toUpperCase(),
        }
      : p.kind === 'text'
        ? {
            __typename: 'TextPreprocessing',
            maxLength: p.maxLength,
            lowercase: p.lowercase,
            vocabularySize: p.vocabulary.length,
          }
        : p.kind === 'tabular'
          ? { __typename: 'TabularPreprocessing', features: p.features }
          : { __typename: 'NoPreprocessing', none: true };
  return {
    named,
    inputs: inputs.map((input: any) => ({
      name: input.name,
      shape: input.shape,
      dtype: input.dtype.toUpperCase(),
      range: input.range ?? null,
      preprocessing: preprocessing(input.preprocessing),
    })),
    outputs: outputs.map((output: any) => ({
      name: output.name,
      kind: output.kind.toUpperCase(),
      labels: output.kind === 'classification' ? output.labels : null,
      size: output.kind === 'classification' ? output.labels.length : output.size,
    })),
  };
}

describe('typed signatures (ModelVersion.io)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
  });
  after(() => server.close());

  const auth = () => ({ token: owner.token });
  /** The version's io, checked against its signature JSON; anyone may read it on a public model. */
  async function ioOf(slug: string, version = '1.0.0') {
    const res = await server.gql(IO, { slug, version });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const { signature, io } = res.data!.model.version;
    assert.deepEqual(io, expectedIo(signature));
    return io;
  }

  it('an image classifier: image preprocessing (stretch when absent, refuse when set), range, labels', async () => {
    const artifact = await uploadWithTfjs(server, buildMlp([784, 16, 10], 7), auth());
    const { slug } = await createModel(server, auth());
    const input = (preprocessing: object) => ({ shape: [784], dtype: 'float32', preprocessing });
    const image = { kind: 'image', height: 28, width: 28, channels: 1, scaling: 'unit' };
    await publish(server, auth(), {
      model: slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: {
        input: { ...input(image), range: { min: 0, max: 1 } },
        output: { kind: 'classification', labels: DIGITS },
      },
    });
    await publish(server, auth(), {
      model: slug,
      version: '2.0.0',
      artifactId: artifact.id,
      signature: {
        input: input({ ...image, scaling: 'none', resize: 'refuse' }),
        output: { kind: 'values', size: 10 },
      },
    });
    const first = await ioOf(slug);
    assert.deepEqual(first.inputs, [
      {
        name: 'input',
        shape: [784],
        dtype: 'FLOAT32',
        range: { min: 0, max: 1 },
        preprocessing: {
          __typename: 'ImagePreprocessing',
          height: 28,
          width: 28,
          channels: 1,
          scaling: 'UNIT',
          resize: 'STRETCH',
        },
      },
    ]);
    assert.deepEqual(first.outputs, [{ name: 'output', kind: 'CLASSIFICATION', labels: DIGITS, size: 10 }]);
    const second = await ioOf(slug, '2.0.0');
    assert.deepEqual(
      [second.inputs[0].preprocessing.scaling, second.inputs[0].preprocessing.resize, second.inputs[0].range],
      ['NONE', 'REFUSE', null],
    );
    assert.deepEqual(second.outputs, [{ name: 'output', kind: 'VALUES', labels: null, size: 10 }]);
  });

  it('a text classifier: its vocabulary by size only', async () => {
    const vocabulary = ['<pad>', '<unk>', 'free', 'money', 'meeting', 'tomorrow', "don't"];
    const artifact = await uploadWithTfjs(server, buildTextClassifier(vocabulary.length, 6), auth());
    const { slug } = await createModel(server, auth(), { task: 'TEXT_CLASSIFICATION' });
    await publish(server, auth(), {
      model: slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: {
        input: {
          shape: [6],
          dtype: 'float32',
          preprocessing: { kind: 'text', vocabulary, maxLength: 6, lowercase: true },
        },
        output: { kind: 'classification', labels: ['ham', 'spam'] },
      },
    });
    const io = await ioOf(slug);
    assert.deepEqual(io.inputs[0].preprocessing, {
      __typename: 'TextPreprocessing',
      maxLength: 6,
      lowercase: true,
      vocabularySize: 7,
    });
  });

  it('a tabular model: features with their standardisation (defaults filled in)', async () => {
    const { model } = await publishedTabular(server, auth(), [{ name: 'age', mean: 40, std: 12 }, { name: 'income' }]);
    const io = await ioOf(model.slug);
    assert.deepEqual(io.inputs[0].preprocessing, {
      __typename: 'TabularPreprocessing',
      features: [
        { name: 'age', mean: 40, std: 12 },
        { name: 'income', mean: 0, std: 1 },
      ],
    });
    assert.deepEqual(io.outputs, [{ name: 'output', kind: 'VALUES', labels: null, size: 1 }]);
  });

  it('a two-headed model: named inputs and outputs in the model order, no preprocessing', async () => {
    const artifact = await uploadWithTfjs(server, buildTwoHeaded(21), auth());
    const { slug } = await createModel(server, auth(), { task: 'REGRESSION' });
    await publish(server, auth(), {
      model: slug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: TWO_HEADED_SIGNATURE,
    });
    const io = await ioOf(slug);
    assert.equal(io.named, true);
    assert.deepEqual(
      io.inputs.map((i: any) => [i.name, i.shape, i.preprocessing]),
      [
        ['a', [32], { __typename: 'NoPreprocessing', none: true }],
        ['b', [16], { __typename: 'NoPreprocessing', none: true }],
      ],
    );
    assert.deepEqual(io.outputs, [
      { name: 'kind', kind: 'CLASSIFICATION', labels: ['cat', 'dog', 'fox'], size: 3 },
      { name: 'score', kind: 'VALUES', labels: null, size: 1 },
    ]);
  });

  it('a vocabulary of 200 000 tokens: io read 15 times (the alias limit) in one request, its tokens never walked again', async () => {
    const vocabulary = ['<pad>', '<unk>', ...Array.from({ length: 199_998 }, (_, i) => `t${i}`)];
    const artifact = await uploadWithTfjs(server, buildTextClassifier(vocabulary.length, 4), auth());
    const { slug } = await createModel(server, auth(), { task: 'TEXT_CLASSIFICATION' });
    const signature = {
      input: {
        shape: [4],
        dtype: 'float32',
        preprocessing: { kind: 'text', vocabulary, maxLength: 4, lowercase: false },
      },
      output: { kind: 'classification', labels: ['ham', 'spam'] },
    };
    await publish(server, auth(), { model: slug, version: '1.0.0', artifactId: artifact.id, signature });
    const aliases = Array.from(
      { length: 15 },
      (_, i) => `io${i}: io { inputs { preprocessing { ... on TextPreprocessing { vocabularySize } } } }`,
    );
    const res = await server.gql(
      `query($slug: String!) { model(slug: $slug) { version(version: "1.0.0") { ${aliases.join(' ')} } } }`,
      { slug },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const sizes = Object.values(res.data!.model.version).map((io: any) => io.inputs[0].preprocessing.vocabularySize);
    assert.deepEqual(sizes, Array(15).fill(200_000));

    // What `io` reads a stored signature with touches no token (only the length); a submitted one is checked in full.
    let tokensRead = 0;
    const counted = new Proxy(vocabulary, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) tokensRead++;
        return Reflect.get(target, key, receiver);
      },
    });
    const stored = {
      ...signature,
      input: { ...signature.input, preprocessing: { ...signature.input.preprocessing, vocabulary: counted } },
    };
    const io = typedSignature(storedSignature(stored));
    assert.deepEqual(
      [io.inputs[0]!.preprocessing, tokensRead],
      [{ __typename: 'TextPreprocessing', maxLength: 4, lowercase: false, vocabularySize: 200_000 }, 0],
    );
    parseSignature(stored);
    assert.ok(
      tokensRead >= vocabulary.length,
      `a submitted vocabulary is checked token by token (${tokensRead} reads)`,
    );
  });
});
