// Issue 9, row 1: uploads whose model.json declares more than its weights hold. tfjs builds (and fills) every
// declared variable before it notices the mismatch, and a wasm heap never shrinks, so each such upload used to
// cost the server hundreds of MB until its runtime broke for every model.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import {
  assertClose,
  createModel,
  expectedOutputs,
  PREDICT,
  publish,
  publishedMlp,
  randomRows,
  uploadWithTfjs,
} from '../support/models.js';
import { authHeaders, startTestServer, type TestServer } from '../support/server.js';

interface LayerJson {
  class_name: string;
  config: Record<string, unknown>;
}

interface Artifact {
  modelJson: {
    modelTopology: { config: { layers: LayerJson[] } };
    format: string;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  weights: Uint8Array;
}

/** What model.save(tf.io.http(...)) would upload for `model`. */
async function savedArtifact(model: tf.LayersModel): Promise<Artifact> {
  let saved!: tf.io.ModelArtifacts;
  await model.save(
    tf.io.withSaveHandler(
      async (a) => ((saved = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }),
    ),
  );
  return {
    modelJson: {
      modelTopology: saved.modelTopology as Artifact['modelJson']['modelTopology'],
      format: 'layers-model',
      weightsManifest: [{ paths: ['model.weights.bin'], weights: saved.weightSpecs ?? [] }],
    },
    weights: new Uint8Array(saved.weightData as ArrayBuffer),
  };
}

/** The artifact with `edit` applied to a copy of its model.json (the weights stay as they are). */
function edited(artifact: Artifact, edit: (modelJson: Artifact['modelJson']) => void): Artifact {
  const modelJson = structuredClone(artifact.modelJson);
  edit(modelJson);
  return { modelJson, weights: artifact.weights };
}

/**
 * No weights, but an activation of 2^32 + 16 bytes per instance: the wasm allocator's 32-bit size wraps and the
 * kernel writes out of bounds, after which that worker's tfjs fails every call.
 */
const activationBomb = () =>
  tf.sequential({
    layers: [tf.layers.repeatVector({ n: 2 ** 28 + 1, inputShape: [4] }), tf.layers.globalAveragePooling1d({})],
  });

const layerConfig = (modelJson: Artifact['modelJson'], index: number) =>
  modelJson.modelTopology.config.layers[index]!.config;

describe('hostile artifacts (issue 9 row 1)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let mlp: Awaited<ReturnType<typeof publishedMlp>>;
  const kinds: { name: string; artifact: Artifact; message: RegExp }[] = [];

  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    mlp = await publishedMlp(server, { token: owner.token });

    const dense = await savedArtifact(
      tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [4] }), tf.layers.dense({ units: 4 })] }),
    );
    const conv = await savedArtifact(
      tf.sequential({
        layers: [
          tf.layers.conv2d({ filters: 2, kernelSize: 3, inputShape: [28, 28, 1] }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 2 }),
        ],
      }),
    );
    const text = await savedArtifact(
      tf.sequential({
        layers: [
          tf.layers.embedding({ inputDim: 10, outputDim: 4, inputLength: 6 }),
          tf.layers.lstm({ units: 3 }),
          tf.layers.dense({ units: 2 }),
        ],
      }),
    );
    kinds.push(
      {
        // The upload: a tiny manifest under Dense layers of 8,000 units (a 64 M-parameter kernel).
        name: 'Dense units far beyond the manifest',
        artifact: edited(dense, (json) => {
          layerConfig(json, 0).units = 8000;
          layerConfig(json, 1).units = 8000;
        }),
        message: /layer dense_Dense\d+ /,
      },
      {
        name: 'Conv2D filters and kernel size beyond the manifest',
        artifact: edited(conv, (json) => {
          layerConfig(json, 0).filters = 4096;
          layerConfig(json, 0).kernel_size = [9, 9];
        }),
        message: /layer conv2d_Conv2D\d+ /,
      },
      {
        name: 'an Embedding past the parameter budget',
        artifact: edited(text, (json) => {
          layerConfig(json, 0).input_dim = 1_000_000;
          layerConfig(json, 0).output_dim = 64;
        }),
        message: /64000\d+ parameters .*embedding.*at most 50000000/,
      },
      {
        name: 'LSTM units beyond the manifest',
        artifact: edited(text, (json) => {
          layerConfig(json, 1).units = 2048;
        }),
        message: /layer lstm_LSTM\d+ /,
      },
      {
        name: 'a manifest that lies about its weight shapes',
        artifact: edited(dense, (json) => {
          json.weightsManifest[0]!.weights[0]!.shape = [4000, 4000];
        }),
        message: /weightsManifest describes \d+ bytes/,
      },
      {
        // Shapes agree, names do not: tfjs builds the model, then fails; what it built must be freed.
        name: 'weights named for no variable',
        artifact: edited(dense, (json) => {
          for (const spec of json.weightsManifest[0]!.weights) spec.name = `other/${spec.name}`;
        }),
        message: /does not load/,
      },
    );
  });
  after(() => server.close());

  async function upload({ modelJson, weights }: Artifact) {
    const body = new FormData();
    body.append('model.json', new Blob([JSON.stringify(modelJson)], { type: 'application/json' }), 'model.json');
    body.append('model.weights.bin', new Blob([weights]), 'model.weights.bin');
    const response = await fetch(`${server.origin}/v1/artifacts`, {
      method: 'POST',
      headers: authHeaders({ token: owner.token }),
      body,
    });
    return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
  }

  async function predictMlp() {
    const rows = randomRows(2, 784, 5);
    const res = await server.gql(PREDICT, { input: { model: mlp.model.slug, inputs: rows } }, { token: owner.token });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const expected = expectedOutputs(mlp.tfModel, rows, [784]);
    res.data!.predict.outputs.forEach((output: { values: number[] }, i: number) =>
      assertClose(output.values, expected[i]!),
    );
  }

  it('30 uploads that declare more than they hold are refused (422, naming the layer) and leave memory flat', async () => {
    await predictMlp();
    const rssBefore = process.memoryUsage().rss;
    for (let round = 0; round < 5; round += 1) {
      for (const kind of kinds) {
        const { status, body } = await upload(kind.artifact);
        assert.equal(status, 422, `${kind.name}: ${JSON.stringify(body)}`);
        assert.equal(body.error?.code, 'BAD_ARTIFACT');
        assert.match(body.error.message, kind.message, kind.name);
      }
    }
    await predictMlp();
    const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    assert.ok(growthMb < 100, `RSS grew ${growthMb.toFixed(0)} MB over 30 refused uploads`);
    const count = await server.sql.query('SELECT count(*)::int AS n FROM artifacts');
    assert.equal(count.rows[0].n, 1, 'only the published model was stored');
  });

  it('a stateful RNN over a fixed batch of 10^8 is refused before it is built (its state is never allocated)', async () => {
    const rnn = await savedArtifact(
      tf.sequential({ layers: [tf.layers.simpleRNN({ units: 1, inputShape: [1, 1] }), tf.layers.dense({ units: 2 })] }),
    );
    const hostile = edited(rnn, (json) => {
      layerConfig(json, 0).stateful = true;
      layerConfig(json, 0).batch_input_shape = [100_000_000, 1, 1];
    });
    const rssBefore = process.memoryUsage().rss;
    const { status, body } = await upload(hostile);
    assert.equal(status, 422, JSON.stringify(body));
    assert.match(body.error!.message, /layer simple_rnn_SimpleRNN\d+ is stateful/);
    const fixedBatch = edited(rnn, (json) => {
      layerConfig(json, 0).batch_input_shape = [100_000_000, 1, 1];
    });
    const second = await upload(fixedBatch);
    assert.equal(second.status, 422, JSON.stringify(second.body));
    assert.match(second.body.error!.message, /fixes the batch size to 100000000/);
    const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    assert.ok(growthMb < 100, `RSS grew ${growthMb.toFixed(0)} MB`);
  });

  it('a model.json over 2 MiB is refused before it is parsed', async () => {
    const dense = await savedArtifact(tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [4] })] }));
    const { status, body } = await upload(
      edited(dense, (json) => {
        (json as Record<string, unknown>).userDefinedMetadata = { pad: '0'.repeat(3 * 1024 * 1024) };
      }),
    );
    assert.equal(status, 413, JSON.stringify(body));
    assert.match(body.error!.message, /at most 2097152 are accepted/);
  });

  it('a manifest that names one file many times is refused before the file is joined', async () => {
    const dense = await savedArtifact(tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [4] })] }));
    const { status, body } = await upload(
      edited(dense, (json) => {
        json.weightsManifest[0]!.paths = Array(500).fill('model.weights.bin');
      }),
    );
    assert.equal(status, 400, JSON.stringify(body));
    assert.match(body.error!.message, /names model\.weights\.bin more than once/);
  });

  it('a layer whose output is over MODEL_MAX_ACTIVATION_VALUES is refused at upload, though it has no weights', async () => {
    const { status, body } = await upload(await savedArtifact(activationBomb()));
    assert.equal(status, 422, JSON.stringify(body));
    assert.equal(body.error?.code, 'BAD_ARTIFACT');
    assert.match(
      body.error!.message,
      /layer repeat_vector_RepeatVector\d+ outputs 1073741828 values per instance; at most 4194304/,
    );
  });

  it('a model whose activations break the wasm runtime (budget raised) costs one worker restart, counted and shown on /readyz', async (t) => {
    const lax = await startTestServer({ MODEL_MAX_ACTIVATION_VALUES: String(2 ** 30 + 4) });
    try {
      // The native backend has no 4 GB heap to break: it would allocate the 4 GB and compute (the budget is what
      // stops such a model there, as the test above shows).
      if (lax.app.services.engine.backend !== 'wasm') return t.skip('what breaks here is the wasm runtime');
      const auth = { token: (await signUp(lax, { role: 'OWNER' })).token };
      const laxMlp = await publishedMlp(lax, auth);
      const artifact = await uploadWithTfjs(lax, activationBomb(), auth);
      const model = await createModel(lax, auth);
      await publish(lax, auth, {
        model: model.slug,
        version: '1.0.0',
        artifactId: artifact.id,
        labels: ['a', 'b', 'c', 'd'],
      });
      const res = await lax.gql(PREDICT, { input: { model: model.slug, inputs: [[1, 2, 3, 4]] } }, auth);
      assert.equal(
        res.errors?.[0]?.extensions?.code,
        'MODEL_ERROR',
        'the call that broke the runtime fails as the model’s',
      );

      const ready = await fetch(`${lax.origin}/readyz`);
      const body = (await ready.json()) as { status: string; inference: { workers: number; workerRestarts: number } };
      assert.equal(ready.status, 200, JSON.stringify(body));
      assert.equal(body.inference.workerRestarts, 1);
      assert.ok(body.inference.workers >= 1);
      const metrics = await (await fetch(`${lax.origin}/metrics`)).text();
      assert.match(metrics, /^mm_inference_worker_restarts_total 1$/m);
      // The replacement worker serves every other model.
      const rows = randomRows(2, 784, 5);
      const after = await lax.gql(PREDICT, { input: { model: laxMlp.model.slug, inputs: rows } }, auth);
      assert.equal(after.errors, undefined, JSON.stringify(after.errors));
      const expected = expectedOutputs(laxMlp.tfModel, rows, [784]);
      after.data!.predict.outputs.forEach((output: { values: number[] }, i: number) =>
        assertClose(output.values, expected[i]!),
      );
    } finally {
      await lax.close();
    }
  });
});
