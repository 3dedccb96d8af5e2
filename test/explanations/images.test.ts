// Image explanations on the demo MNIST MLP (28×28×1, unit-scaled): Kernel SHAP over 4×4-pixel patches and
// occlusion of the same patches, in the image's shape, with a PNG heat map; the patches that Kernel SHAP credits
// most matter more to the model than as many random ones.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { PREDICT } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { explained, publishedDemo } from './support.js';

describe('explain: images (the demo MNIST MLP)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let demo: Awaited<ReturnType<typeof publishedDemo>>;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    demo = await publishedDemo(server, { token: owner.token }, 'mnist-mlp');
  });
  after(() => server.close());

  /** Held-out digit i as predict takes it: 28 rows of 28 [pixel] values in 0..1. */
  const digit = (i: number) => {
    const { inputs, exampleSize } = demo.evalSet;
    const flat = Array.from(inputs.subarray(i * exampleSize, (i + 1) * exampleSize));
    return Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [flat[r * 28 + c]!]));
  };

  async function assertHeatmap(dataUrl: string | null) {
    assert.ok(dataUrl?.startsWith('data:image/png;base64,'), String(dataUrl).slice(0, 40));
    const meta = await sharp(Buffer.from(dataUrl!.slice('data:image/png;base64,'.length), 'base64')).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 28, 28]);
  }

  for (const method of ['KERNEL_SHAP', 'OCCLUSION'] as const) {
    it(`${method}: values in the image's shape (28×28×1), a 28×28 PNG heat map, the predicted label as predict gives it`, async () => {
      const inputs = [digit(0), digit(1)];
      const explanation = await explained(server, { token: owner.token }, { model: demo.slug, inputs, method });
      const prediction = await server.gql(PREDICT, { input: { model: demo.slug, inputs } }, { token: owner.token });
      assert.equal(explanation.method, method);
      assert.match(explanation.baseline, /black .* 4×4/);
      // Occlusion: one evaluation per 4×4 patch (49); Kernel SHAP: its coalitions (the empty one + 127 pairs).
      assert.equal(explanation.evaluations, 2 + 2 * (method === 'OCCLUSION' ? 49 : 255));
      for (const [i, instance] of explanation.instances.entries()) {
        assert.equal(instance.form, 'IMAGE');
        assert.deepEqual(instance.shape, [28, 28, 1]);
        assert.equal(instance.values.length, 784);
        assert.equal(instance.predicted.label, prediction.data!.predict.outputs[i].label);
        assert.ok(Math.abs(instance.predicted.score - prediction.data!.predict.outputs[i].score) < 1e-5);
        assert.ok(instance.values.some((v) => v !== 0));
        await assertHeatmap(instance.heatmap);
        if (method === 'KERNEL_SHAP') {
          assert.equal(instance.check!.kind, 'EFFICIENCY');
          assert.ok(instance.check!.error < 1e-3, JSON.stringify(instance.check));
          const sum = instance.values.reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(sum - instance.check!.outputDifference) < 1e-3);
        } else {
          assert.equal(instance.check, null);
        }
      }
    });
  }

  it('explains an image sent as a base64 PNG, as predict takes it, against a given target label', async () => {
    const [example] = demo.evalSet.examples;
    const { instances } = await explained(
      server,
      { token: owner.token },
      {
        model: demo.slug,
        inputs: [example!.input],
        method: 'OCCLUSION',
        target: '3',
      },
    );
    assert.equal(instances[0]!.target.label, '3');
    assert.deepEqual(instances[0]!.shape, [28, 28, 1]);
    await assertHeatmap(instances[0]!.heatmap);
  });

  it('blanking the 8 patches Kernel SHAP credits most lowers the score more than 8 random patches, on most digits', async (t) => {
    const digits = 40;
    let better = 0;
    const patchOf = (offset: number) => Math.floor(offset / 28 / 4) * 7 + Math.floor((offset % 28) / 4);
    let seed = 11;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    for (let start = 0; start < digits; start += 8) {
      const inputs = Array.from({ length: 8 }, (_, k) => digit(start + k));
      const { instances } = await explained(
        server,
        { token: owner.token },
        { model: demo.slug, inputs, method: 'KERNEL_SHAP' },
      );
      const blanked: number[][][][] = [];
      instances.forEach((instance, k) => {
        const weights = new Array<number>(49).fill(0);
        instance.values.forEach((v, offset) => (weights[patchOf(offset)]! += v));
        const top = new Set([...weights.keys()].sort((a, b) => weights[b]! - weights[a]!).slice(0, 8));
        const randomPatches = new Set<number>();
        while (randomPatches.size < 8) randomPatches.add(Math.floor(random() * 49));
        for (const patches of [top, randomPatches]) {
          blanked.push(
            inputs[k]!.map((row, r) => row.map((pixel, c) => (patches.has(patchOf(r * 28 + c)) ? [0] : pixel))),
          );
        }
      });
      const res = await server.gql(
        PREDICT,
        { input: { model: demo.slug, inputs: blanked, topK: 10 } },
        { token: owner.token },
      );
      const outputs = res.data!.predict.outputs as { values: number[] }[];
      instances.forEach((instance, k) => {
        const target = demo.labels.indexOf(instance.target.label);
        if (outputs[2 * k]!.values[target]! < outputs[2 * k + 1]!.values[target]!) better++;
      });
    }
    const counts = `top patches lowered the score more than random ones on ${better} of ${digits} held-out digits`;
    t.diagnostic(counts);
    assert.ok(better >= 0.9 * digits, counts);
  });
});
