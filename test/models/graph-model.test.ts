// Graph models (issue 12): nsfwjs's MobileNetV2 as `tensorflowjs_converter` made it from a SavedModel
// (format "graph-model", uint8-quantised weights in two shards), uploaded as shipped, published with the
// signature read from the model, served in merged batches, downloaded and marked.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertClose, createModel, PREDICT, publish, PUBLISH, randomRows } from '../support/models.js';
import { NSFW_LABELS, pretrained, type PretrainedModel } from '../support/pretrained.js';
import { authHeaders, startTestServer, type TestServer } from '../support/server.js';

type ModelJson = Omit<PretrainedModel['modelJson'], 'modelTopology' | 'weightsManifest'> & {
  modelTopology: { node: { name: string; op: string; attr?: any }[] };
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
};

/** A graph model's files: model.json and its weight files by name. */
interface GraphFiles {
  modelJson: ModelJson;
  files: Map<string, Uint8Array>;
}

const VERIFY = `query V($a: ID!) { verifyWatermark(artifactId: $a) { verdict keysTried
  matches { model version kind contract matchedBits } } }`;
const IMAGE_VALUES = 224 * 224 * 3;

async function shippedFiles(): Promise<GraphFiles> {
  const model = await pretrained('mobilenetV2Graph');
  const modelJson = structuredClone(model.modelJson) as ModelJson;
  const files = new Map<string, Uint8Array>();
  for (const name of modelJson.weightsManifest.flatMap((group) => group.paths))
    files.set(name, await readFile(path.join(model.dir, name)));
  return { modelJson, files };
}

/**
 * The same real model with float32 weights: each uint8 weight dequantised (q · scale + min, what tfjs computes
 * when it loads the shipped model) into one float32 file, the quantization entries dropped.
 */
function float32Copy({ modelJson, files }: GraphFiles): GraphFiles {
  const bytes = Buffer.concat(modelJson.weightsManifest.flatMap((group) => group.paths.map((p) => files.get(p)!)));
  const specs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const size = (spec: tf.io.WeightsManifestEntry) => spec.shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(specs.reduce((sum, spec) => sum + size(spec), 0));
  let offset = 0;
  let written = 0;
  for (const spec of specs) {
    const { scale, min, dtype } = spec.quantization!;
    assert.equal(dtype, 'uint8');
    for (let i = 0; i < size(spec); i++) values[written++] = bytes[offset + i]! * scale! + min!;
    offset += size(spec);
  }
  const copy = structuredClone(modelJson);
  copy.weightsManifest = [
    { paths: ['weights.bin'], weights: specs.map(({ name, shape, dtype }) => ({ name, shape, dtype })) },
  ];
  return { modelJson: copy, files: new Map([['weights.bin', new Uint8Array(values.buffer)]]) };
}

/** tfjs's own graph model from these files, loaded in this process (the reference the server must equal). */
function loadLocally({ modelJson, files }: GraphFiles): Promise<tf.GraphModel> {
  return tf.loadGraphModel({
    load: () =>
      tf.io.getModelArtifactsForJSON(modelJson as unknown as tf.io.ModelJSON, async (manifest) => [
        tf.io.getWeightSpecs(manifest),
        manifest.flatMap((group) => group.paths.map((p) => files.get(p)!.slice().buffer)),
      ]),
  });
}

function predictLocally(model: tf.GraphModel, rows: number[][]): number[][] {
  return tf.tidy(
    () => (model.predict(tf.tensor(rows.flat(), [rows.length, 224, 224, 3])) as tf.Tensor).arraySync() as number[][],
  );
}

/** Images with values in 0..1, three decimals (1 MB of JSON each). */
const images = (count: number, seed: number) =>
  randomRows(count, IMAGE_VALUES, seed).map((row) => row.map((v) => Math.round(v * 1000) / 1000));
const asImage = (row: number[]) =>
  Array.from({ length: 224 }, (_, y) =>
    Array.from({ length: 224 }, (_, x) => row.slice((y * 224 + x) * 3, (y * 224 + x) * 3 + 3)),
  );

/**
 * A graph of one float32 input [batch, ...inputDims] (-1 unknown) tiled by the Const `multiples` (int32 weights):
 * the smallest graph whose op takes its output size from a constant.
 */
function tileGraph(inputDims: number[], multiples: number[], declaredOutput?: number[], type = 'DT_FLOAT'): GraphFiles {
  const dim = (sizes: number[]) => ({ dim: sizes.map((size) => ({ size: String(size) })) });
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'test',
    convertedBy: 'test',
    modelTopology: {
      versions: { producer: 1 },
      node: [
        {
          name: 'x',
          op: 'Placeholder',
          attr: { dtype: { type }, shape: { shape: dim([-1, ...inputDims]) } },
        },
        {
          name: 'multiples',
          op: 'Const',
          attr: {
            dtype: { type: 'DT_INT32' },
            value: { tensor: { dtype: 'DT_INT32', tensorShape: dim([multiples.length]) } },
          },
        },
        {
          name: 'tiled',
          op: 'Tile',
          input: ['x', 'multiples'],
          attr: { T: { type }, Tmultiples: { type: 'DT_INT32' } },
        },
      ],
    },
    weightsManifest: [
      { paths: ['weights.bin'], weights: [{ name: 'multiples', shape: [multiples.length], dtype: 'int32' }] },
    ],
    ...(declaredOutput && {
      signature: { outputs: { 'tiled:0': { name: 'tiled:0', tensorShape: dim(declaredOutput) } } },
    }),
  } as unknown as ModelJson;
  return { modelJson, files: new Map([['weights.bin', new Uint8Array(Int32Array.from(multiples).buffer)]]) };
}

describe('graph models (format "graph-model")', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let shipped: GraphFiles;
  let reference: tf.GraphModel;
  let slug: string;
  let shippedSha256: string;
  let version: { id: string; signature: any };
  const rows = images(3, 12);
  let expected: number[][];

  async function upload({ modelJson, files }: GraphFiles, token = owner.token) {
    const body = new FormData();
    body.append('model.json', new Blob([JSON.stringify(modelJson)], { type: 'application/json' }), 'model.json');
    for (const [name, bytes] of files) body.append(name, new Blob([bytes]), name);
    const response = await fetch(`${server.origin}/v1/artifacts`, {
      method: 'POST',
      headers: authHeaders({ token }),
      body,
    });
    return {
      status: response.status,
      body: (await response.json()) as { id: string; sha256: string; error?: { code: string; message: string } },
    };
  }

  /** A version's served files, as anyone downloading them gets them. */
  async function download(versionId: string, token: string): Promise<GraphFiles> {
    const get = (file: string) =>
      fetch(`${server.origin}/v1/versions/${versionId}/${file}`, { headers: authHeaders({ token }) });
    const modelJson = (await (await get('model.json')).json()) as ModelJson;
    const [file] = modelJson.weightsManifest.flatMap((group) => group.paths);
    const weights = new Uint8Array(await (await get(file!)).arrayBuffer());
    return { modelJson, files: new Map([[file!, weights]]) };
  }

  const batchMetrics = async () => {
    const text = await (await fetch(`${server.origin}/metrics`)).text();
    const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    return { batches: read('mm_predict_batch_size_count'), instances: read('mm_predict_batch_size_sum') };
  };

  before(async () => {
    // One worker: requests that arrive together cannot be split over several.
    server = await startTestServer({ INFERENCE_WORKERS: '1' });
    owner = await signUp(server, { role: 'OWNER' });
    shipped = await shippedFiles();
    reference = await loadLocally(shipped);
    expected = predictLocally(reference, rows);
    const uploaded = await upload(shipped);
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    shippedSha256 = uploaded.body.sha256;
    const model = await createModel(server, { token: owner.token }, { name: 'NSFW', task: 'IMAGE_CLASSIFICATION' });
    slug = model.slug;
    version = await publish(
      server,
      { token: owner.token },
      {
        model: slug,
        version: '1.0.0',
        artifactId: uploaded.body.id,
        labels: NSFW_LABELS,
      },
    );
  });
  after(async () => {
    reference?.dispose();
    await server?.close();
  });

  it("publishes with the signature read from the model's own (input [224, 224, 3] float32, 5 labels)", () => {
    assert.deepEqual(version.signature, {
      input: { shape: [224, 224, 3], dtype: 'float32', preprocessing: { kind: 'none' } },
      output: { kind: 'classification', labels: NSFW_LABELS },
    });
  });

  it("predicts what tf.loadGraphModel's own predict gives, for several instances and for concurrent calls", async () => {
    const auth = { token: owner.token };
    const one = await server.gql(PREDICT, { input: { model: slug, inputs: rows.map(asImage) } }, auth);
    assert.equal(one.errors, undefined, JSON.stringify(one.errors));
    one.data!.predict.outputs.forEach((output: { values: number[]; label: string }, i: number) => {
      assertClose(output.values, expected[i]!, 1e-4);
      assert.equal(output.label, NSFW_LABELS[expected[i]!.indexOf(Math.max(...expected[i]!))]);
    });

    const calls = await Promise.all(
      [[0, 2], [1]].map((picked) =>
        server.gql(PREDICT, { input: { model: slug, inputs: picked.map((i) => asImage(rows[i]!)) } }, auth),
      ),
    );
    calls.forEach((call, c) => assert.equal(call.errors, undefined, `call ${c}: ${JSON.stringify(call.errors)}`));
    calls[0]!.data!.predict.outputs.forEach((output: { values: number[] }, i: number) =>
      assertClose(output.values, expected[[0, 2][i]!]!, 1e-4),
    );
    assertClose(calls[1]!.data!.predict.outputs[0].values, expected[1]!, 1e-4);
  });

  it('requests for the graph model that arrive together run as one batch (batch dimension -1), each getting its own rows', async () => {
    // HTTP calls arrive when their bodies are parsed; the engine's own callers arrive in one event-loop turn.
    const { engine, artifacts } = server.app.services;
    const ref = artifacts.modelRef(shippedSha256);
    // The input keeps the name the model's signature gives it (what a several-input call would address).
    assert.deepEqual(await engine.inspect(ref), {
      inputs: [{ name: 'input:0', shape: [null, 224, 224, 3], dtype: 'float32', embeddingInputDim: null }],
      outputs: [{ name: 'Identity:0', shape: [null, 5] }],
    });
    const before = await batchMetrics();
    const outputs = await Promise.all(
      rows.map((row) =>
        engine.predict(ref, { data: Float32Array.from(row), shape: [1, 224, 224, 3], dtype: 'float32' }),
      ),
    );
    const afterCalls = await batchMetrics();
    assert.deepEqual([afterCalls.batches - before.batches, afterCalls.instances - before.instances], [1, 3]);
    outputs.forEach((output, i) => {
      assert.deepEqual(output.shape, [1, 5]);
      assertClose([...output.data], expected[i]!, 1e-4);
    });
  });

  it('downloads as model.json (format graph-model) + weights that tf.loadGraphModel loads and that predict the same', async () => {
    const headers = authHeaders({ token: owner.token });
    const copy = await tf.loadGraphModel(`${server.origin}/v1/versions/${version.id}/model.json`, {
      requestInit: { headers },
    });
    try {
      assert.deepEqual(copy.inputNodes, ['input:0']);
      assertClose(predictLocally(copy, rows.slice(0, 1))[0]!, expected[0]!, 1e-6);
    } finally {
      copy.dispose();
    }
    const modelJson = await fetch(`${server.origin}/v1/versions/${version.id}/model.json`, { headers });
    assert.equal(((await modelJson.json()) as ModelJson).format, 'graph-model');
  });

  it('the shipped (uint8-quantised) graph model publishes with the owner mark and stays quantised', async () => {
    const uploaded = await upload(shipped);
    const model = await createModel(server, { token: owner.token }, { name: 'NSFW quantised, marked' });
    const published = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) {
        id sizeBytes watermark { marked tensor relativeChange bits } } }`,
      { input: { model: model.slug, version: '1.0.0', artifactId: uploaded.body.id, labels: NSFW_LABELS } },
      { token: owner.token },
    );
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    const marked = published.data!.publishModelVersion;
    assert.equal(marked.watermark.marked, true);
    assert.match(marked.watermark.tensor, /Conv_1\/Conv2D_weights$/);
    // The served copy keeps the uint8 scheme: the same manifest, the same size.
    const modelJson = (await (
      await fetch(`${server.origin}/v1/versions/${marked.id}/model.json`, {
        headers: authHeaders({ token: owner.token }),
      })
    ).json()) as ModelJson;
    const quantised = modelJson.weightsManifest.flatMap((group) => group.weights).filter((w: any) => w.quantization);
    assert.ok(quantised.length > 0 && quantised.every((w: any) => w.quantization.dtype === 'uint8'));
    const served = await server.gql(
      PREDICT,
      { input: { model: model.slug, inputs: rows.map(asImage) } },
      { token: owner.token },
    );
    assert.equal(served.errors, undefined, JSON.stringify(served.errors));
    const best = (row: number[]) => NSFW_LABELS[row.indexOf(Math.max(...row))];
    assert.deepEqual(
      served.data!.predict.outputs.map((output: { label: string }) => output.label),
      expected.map(best),
    );
  });

  it('the float32 graph model carries the owner mark on its largest weight tensor, and licensee copies their fingerprint', async () => {
    const floats = float32Copy(shipped);
    const uploaded = await upload(floats);
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    const model = await createModel(server, { token: owner.token }, { name: 'NSFW float32' });
    const published = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) {
        id watermark { marked tensor relativeChange bits } } }`,
      { input: { model: model.slug, version: '1.0.0', artifactId: uploaded.body.id, labels: NSFW_LABELS } },
      { token: owner.token },
    );
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    const marked = published.data!.publishModelVersion;
    assert.equal(marked.watermark.marked, true);
    assert.match(marked.watermark.tensor, /MobilenetV2\/Conv_1\/Conv2D_weights$/);
    assert.ok(marked.watermark.relativeChange < 0.05, JSON.stringify(marked.watermark));

    // The marked model serves, and classifies as the unmarked one does.
    const auth = { token: owner.token };
    const served = await server.gql(PREDICT, { input: { model: model.slug, inputs: rows.map(asImage) } }, auth);
    assert.equal(served.errors, undefined, JSON.stringify(served.errors));
    const best = (row: number[]) => NSFW_LABELS[row.indexOf(Math.max(...row))];
    assert.deepEqual(
      served.data!.predict.outputs.map((output: { label: string }) => output.label),
      expected.map(best),
    );

    const plan = await createPlan(server, { token: owner.token }, model.slug, { downloadAllowed: true });
    const licensee = await signUp(server);
    const contract = await accept(server, { token: licensee.token }, plan.id);
    const leaked = await upload(await download(marked.id, licensee.token));
    assert.equal(leaked.status, 201, JSON.stringify(leaked.body));
    const found = (await server.gql(VERIFY, { a: leaked.body.id }, { token: owner.token })).data!.verifyWatermark;
    assert.equal(found.verdict, 'MATCH', JSON.stringify(found));
    assert.deepEqual(found.matches.map((m: any) => [m.kind, m.contract]).sort(), [
      ['LICENSEE', contract.id],
      ['OWNER', null],
    ]);
  });

  it('a graph whose input has unknown dimensions needs a signature at publish; with one, it serves', async () => {
    const open = structuredClone(shipped.modelJson);
    const placeholder = open.modelTopology.node.find((n) => n.op === 'Placeholder')!;
    for (const i of [1, 2]) placeholder.attr.shape.shape.dim[i].size = '-1';
    const uploaded = await upload({ modelJson: open, files: shipped.files });
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    const input = { model: slug, version: '2.0.0', artifactId: uploaded.body.id, labels: NSFW_LABELS };
    const auth = { token: owner.token };
    const error = expectError(await server.gql(PUBLISH, { input }, auth), 'BAD_USER_INPUT');
    assert.match(error.message, /The model's input input:0 has unknown dimensions \[\?, \?, 3\]; give a signature/);
    const signature = {
      input: { shape: [224, 224, 3], dtype: 'float32', preprocessing: { kind: 'none' } },
      output: { kind: 'classification', labels: NSFW_LABELS },
    };
    await publish(server, auth, { ...input, signature });
    const res = await server.gql(
      PREDICT,
      { input: { model: slug, version: '2.0.0', inputs: [asImage(rows[1]!)] } },
      auth,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assertClose(res.data!.predict.outputs[0].values, expected[1]!, 1e-4);
  });

  it('a graph that returns more values per instance than its signature declares fails the call (MODEL_ERROR, unbilled)', async () => {
    // Unknown input dimensions: no probe at upload; the graph declares 10 outputs but tiles its input 20 times.
    const uploaded = await upload(tileGraph([-1], [1, 20], [-1, 10]));
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    const model = await createModel(server, { token: owner.token }, { name: 'Wider than declared' });
    const labels = Array.from({ length: 10 }, (_, i) => `l${i}`);
    const signature = {
      input: { shape: [4], dtype: 'float32', preprocessing: { kind: 'none' } },
      output: { kind: 'classification', labels },
    };
    await publish(
      server,
      { token: owner.token },
      { model: model.slug, version: '1.0.0', artifactId: uploaded.body.id, signature },
    );
    const error = expectError(
      await server.gql(PREDICT, { input: { model: model.slug, inputs: [[1, 2, 3, 4]] } }, { token: owner.token }),
      'MODEL_ERROR',
    );
    assert.match(
      error.message,
      /The model returned 80 values per instance; its signature declares 10; this call is not billed/,
    );
  });

  it("a graph's int32 input publishes only with a declared range, which bounds each instance", async () => {
    const uploaded = await upload(tileGraph([4], [1, 1], undefined, 'DT_INT32'));
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    const model = await createModel(server, { token: owner.token }, { name: 'Ids' });
    const input = { model: model.slug, version: '1.0.0', artifactId: uploaded.body.id };
    const auth = { token: owner.token };
    const error = expectError(await server.gql(PUBLISH, { input }, auth), 'BAD_USER_INPUT');
    assert.match(error.message, /input x is int32 in a graph model.*declares range/);
    const signature = {
      input: { shape: [4], dtype: 'int32', range: { min: 0, max: 9 } },
      output: { kind: 'values', size: 4 },
    };
    await publish(server, auth, { ...input, signature });
    const refused = expectError(
      await server.gql(PREDICT, { input: { model: model.slug, inputs: [[1, 2, 3, 10]] } }, auth),
      'BAD_USER_INPUT',
    );
    assert.match(refused.message, /10/);
    const served = await server.gql(PREDICT, { input: { model: model.slug, inputs: [[1, 2, 3, 9]] } }, auth);
    assert.deepEqual(served.data!.predict.outputs[0].values, [1, 2, 3, 9], JSON.stringify(served.errors));
  });

  describe('hostile graphs are refused at upload (422 BAD_ARTIFACT) and nothing is stored', () => {
    const edited = (edit: (json: ModelJson) => void): GraphFiles => {
      const modelJson = structuredClone(shipped.modelJson);
      edit(modelJson);
      return { modelJson, files: shipped.files };
    };
    const node = (json: ModelJson, op: string) => json.modelTopology.node.find((n) => n.op === op)!;
    const cases: [string, () => GraphFiles, RegExp][] = [
      [
        'an op TensorFlow.js does not have',
        () => edited((json) => (node(json, 'Softmax').op = 'SoftmaxWithTelemetry')),
        /uses op SoftmaxWithTelemetry, which TensorFlow.js does not support/,
      ],
      [
        'a control-flow op (needs executeAsync)',
        () => edited((json) => (node(json, 'Identity').op = 'LoopCond')),
        /uses op LoopCond \(control\), which needs executeAsync/,
      ],
      [
        'a graph of 10,001 nodes',
        () =>
          edited((json) => {
            for (let i = json.modelTopology.node.length; i <= 10_000; i++)
              json.modelTopology.node.push({ name: `pad${i}`, op: 'NoOp' });
          }),
        /the graph has 10001 nodes; at most 10000/,
      ],
      [
        'a node with oversized attributes',
        () => edited((json) => (node(json, 'Softmax').attr = { pad: { s: 'A'.repeat(20_000) } })),
        /attributes over 16384 characters/,
      ],
      [
        'weights no Const node is',
        () => edited((json) => (json.weightsManifest[0]!.weights[0]!.name = 'not/a/node')),
        /weightsManifest holds not\/a\/node, which no Const node/,
      ],
      [
        'a Const node whose shape the manifest contradicts',
        () =>
          edited((json) => {
            const [spec] = json.weightsManifest[0]!.weights;
            json.modelTopology.node.find((n) => n.name === spec!.name)!.attr.value.tensor.tensorShape.dim[3].size =
              '96';
          }),
        /has shape \[3, 3, 3, 96\] but weightsManifest gives \[3, 3, 3, 48\]/,
      ],
      [
        'a manifest that claims more bytes than the shards hold',
        () => edited((json) => (json.weightsManifest[0]!.weights[0]!.shape = [3, 3, 3, 4800])),
        /weightsManifest describes \d+ bytes of weights but the artifact has \d+/,
      ],
      [
        // 4 · 2^22 values per instance, 4× MODEL_MAX_ACTIVATION_VALUES' default: sized by a Const, seen only by running.
        'an op whose output a constant makes larger than the activation budget (Tile by [1, 2^22])',
        () => tileGraph([4], [1, 2 ** 22]),
        /op Tile outputs \[2, 16777216\] for 2 instances: 16777216 values per instance; at most 4194304 are served/,
      ],
      [
        'an input that fixes the batch size',
        () => edited((json) => (node(json, 'Placeholder').attr.shape.shape.dim[0].size = '1')),
        /fixes the batch size to 1/,
      ],
    ];
    for (const [name, make, message] of cases) {
      it(name, async () => {
        const artifactsBefore = await server.sql.query('SELECT count(*)::int AS n FROM artifacts');
        const { status, body } = await upload(make());
        assert.equal(status, 422, JSON.stringify(body));
        assert.equal(body.error?.code, 'BAD_ARTIFACT');
        assert.match(body.error.message, message);
        const artifactsAfter = await server.sql.query('SELECT count(*)::int AS n FROM artifacts');
        assert.equal(artifactsAfter.rows[0].n, artifactsBefore.rows[0].n);
      });
    }

    it('refused loads free the weights they decoded (10 refusals after loading, memory flat)', async () => {
      const [unknownOp, controlFlow] = cases.map(([, make]) => make());
      const rssBefore = process.memoryUsage().rss;
      for (let round = 0; round < 5; round += 1) {
        for (const files of [unknownOp!, controlFlow!]) assert.equal((await upload(files)).status, 422);
      }
      // Each load decodes 17 MB of float32 weights in a worker; kept, ten would hold 170 MB.
      const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
      assert.ok(growthMb < 60, `RSS grew ${growthMb.toFixed(0)} MB over 10 refused loads`);
    });

    it('the published graph model still serves after them', async () => {
      const res = await server.gql(
        PREDICT,
        { input: { model: slug, inputs: [asImage(rows[0]!)] } },
        {
          token: owner.token,
        },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      assertClose(res.data!.predict.outputs[0].values, expected[0]!, 1e-4);
    });
  });
});
