// Tabular explanations on a small classifier trained here: one weight per named feature; with few features Kernel
// SHAP uses every coalition and must equal the exact Shapley values (computed here with tfjs over all 2^M
// coalitions), and satisfy efficiency; occlusion's weights are each feature's drop, computed here too.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { createModel, publish, uploadWithTfjs } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { explained } from './support.js';

const FEATURES = [
  { name: 'income', mean: 50, std: 20 },
  { name: 'debt', mean: 10, std: 5 },
  { name: 'age', mean: 40, std: 12 },
  { name: 'noise', mean: 0, std: 1 },
];
const LABELS = ['approve', 'decline'];

/** Decline when debt outweighs income (standardised), with age a little; noise means nothing. */
async function trainedClassifier(): Promise<tf.Sequential> {
  let seed = 3;
  const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < 600; i++) {
    const row = FEATURES.map(() => random() * 4 - 2);
    rows.push(row);
    labels.push(row[1]! - row[0]! + 0.3 * row[2]! > 0 ? 1 : 0);
  }
  const model = tf.sequential({
    layers: [
      tf.layers.dense({
        units: 8,
        activation: 'tanh',
        inputShape: [4],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
      }),
      tf.layers.dense({
        units: 2,
        activation: 'softmax',
        kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }),
      }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy' });
  const x = tf.tensor2d(rows);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 2);
  await model.fit(x, y, { epochs: 40, batchSize: 64, verbose: 0 });
  tf.dispose([x, y]);
  return model;
}

/** The model's score for `target` on standardised rows. */
function scores(model: tf.LayersModel, rows: number[][], target: number): number[] {
  return tf.tidy(() =>
    Array.from((model.predict(tf.tensor2d(rows)) as tf.Tensor).arraySync() as number[][], (r) => r[target]!),
  );
}

/** Exact Shapley values, a removed feature being 0 (its mean after standardisation). */
function exactShapley(model: tf.LayersModel, x: number[], target: number): number[] {
  const M = x.length;
  const coalitions = Array.from({ length: 2 ** M }, (_, code) => x.map((v, j) => ((code >> j) & 1 ? v : 0)));
  const f = scores(model, coalitions, target);
  const factorial = (n: number): number => (n <= 1 ? 1 : n * factorial(n - 1));
  return x.map((_, j) => {
    let phi = 0;
    for (let code = 0; code < 2 ** M; code++) {
      if ((code >> j) & 1) continue;
      const size = [...Array(M).keys()].filter((k) => (code >> k) & 1).length;
      phi += ((factorial(size) * factorial(M - size - 1)) / factorial(M)) * (f[code | (1 << j)]! - f[code]!);
    }
    return phi;
  });
}

describe('explain: tabular input (a classifier trained in the test)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let tfModel: tf.Sequential;
  let slug: string;
  before(async () => {
    [server, tfModel] = await Promise.all([startTestServer(), trainedClassifier()]);
    owner = await signUp(server, { role: 'OWNER' });
    const artifact = await uploadWithTfjs(server, tfModel, { token: owner.token });
    slug = (await createModel(server, { token: owner.token }, { task: 'TABULAR_CLASSIFICATION' })).slug;
    await publish(
      server,
      { token: owner.token },
      {
        model: slug,
        version: '1.0.0',
        artifactId: artifact.id,
        signature: {
          input: { shape: [4], dtype: 'float32', preprocessing: { kind: 'tabular', features: FEATURES } },
          output: { kind: 'classification', labels: LABELS },
        },
      },
    );
  });
  after(() => server.close());

  const applicants = [
    { income: 30, debt: 18, age: 60, noise: 0.5 },
    { income: 90, debt: 4, age: 25, noise: -1 },
  ];
  const standardised = applicants.map((a) =>
    FEATURES.map((f) => ((a as Record<string, number>)[f.name]! - f.mean) / f.std),
  );

  it('Kernel SHAP: one weight per named feature, equal to the exact Shapley values, efficiency holds', async () => {
    const explanation = await explained(
      server,
      { token: owner.token },
      { model: slug, inputs: applicants, method: 'KERNEL_SHAP' },
    );
    assert.match(explanation.baseline, /mean/);
    explanation.instances.forEach((instance, i) => {
      assert.equal(instance.form, 'FEATURES');
      assert.deepEqual(
        instance.features,
        FEATURES.map((f) => f.name),
      );
      assert.deepEqual(instance.shape, [4]);
      const target = LABELS.indexOf(instance.target.label);
      assert.equal(instance.target.label, instance.predicted.label, 'no target: the predicted label is explained');
      const exact = exactShapley(tfModel, standardised[i]!, target);
      instance.values.forEach((value, j) =>
        assert.ok(Math.abs(value - exact[j]!) < 1e-4, `${FEATURES[j]!.name}: ${value} vs exact ${exact[j]}`),
      );
      const check = instance.check!;
      assert.equal(check.kind, 'EFFICIENCY');
      const [fx, fb] = [scores(tfModel, [standardised[i]!], target)[0]!, scores(tfModel, [[0, 0, 0, 0]], target)[0]!];
      assert.ok(Math.abs(check.outputDifference - (fx - fb)) < 1e-5, `${check.outputDifference} vs ${fx - fb}`);
      const sum = instance.values.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - (fx - fb)) < 1e-3, `Σφ ${sum} vs f(x) − f(b) ${fx - fb}`);
      assert.ok(check.error < 1e-3);
      // The label depends on debt and income, never on noise.
      const noise = Math.abs(instance.values[3]!);
      assert.ok(
        Math.abs(instance.values[0]!) > noise && Math.abs(instance.values[1]!) > noise,
        JSON.stringify(instance.values),
      );
    });
  });

  it('Kernel SHAP explains a given target label, and OCCLUSION gives each feature its drop', async () => {
    const [shap] = (
      await explained(
        server,
        { token: owner.token },
        {
          model: slug,
          inputs: [applicants[0]],
          method: 'KERNEL_SHAP',
          target: 'approve',
        },
      )
    ).instances;
    assert.equal(shap!.target.label, 'approve');
    const exact = exactShapley(tfModel, standardised[0]!, 0);
    shap!.values.forEach((value, j) => assert.ok(Math.abs(value - exact[j]!) < 1e-4));

    const [occlusion] = (
      await explained(
        server,
        { token: owner.token },
        {
          model: slug,
          inputs: [applicants[0]],
          method: 'OCCLUSION',
          target: 'decline',
        },
      )
    ).instances;
    assert.equal(occlusion!.check, null);
    const x = standardised[0]!;
    const [full, ...without] = scores(tfModel, [x, ...x.map((_, j) => x.map((v, k) => (k === j ? 0 : v)))], 1);
    occlusion!.values.forEach((value, j) =>
      assert.ok(Math.abs(value - (full! - without[j]!)) < 1e-5, `${value} vs ${full! - without[j]!}`),
    );
  });
});
