// Text explanations on the demo spam classifier (256 token ids, padding 0): one weight per token, the tokens as the
// text preprocessing reads them, and faithfulness — removing the 5 tokens Kernel SHAP credits most flips more
// predictions than removing 5 random ones.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { sampleCoalitions, solveKernelShap } from '../../src/explanations/kernel-shap.js';
import { tokenize } from '../../src/preprocessing/text.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { PREDICT } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { explained, publishedDemo } from './support.js';

describe('explain: text (the demo spam classifier)', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let demo: Awaited<ReturnType<typeof publishedDemo>>;
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    demo = await publishedDemo(server, { token: owner.token }, 'spam-classifier');
  });
  after(() => server.close());

  it('weights each token of a message sent as text, the tokens as the preprocessing read them; efficiency holds', async () => {
    const text = 'Subject: WIN a FREE prize now\n\nClick here to claim your cash, limited offer!';
    for (const method of ['KERNEL_SHAP', 'OCCLUSION']) {
      const [instance] = (await explained(server, { token: owner.token }, { model: demo.slug, inputs: [text], method }))
        .instances;
      assert.equal(instance!.form, 'TEXT');
      assert.deepEqual(instance!.tokens, tokenize(text, true));
      assert.deepEqual(instance!.shape, [instance!.tokens!.length]);
      assert.equal(instance!.values.length, instance!.tokens!.length);
      assert.equal(instance!.heatmap, null);
      if (method === 'KERNEL_SHAP') assert.ok(instance!.check!.error < 1e-3, JSON.stringify(instance!.check));
    }
  });

  it('removing the top-5 tokens (Kernel SHAP, 256 samples) flips more predictions than removing 5 random ones', async (t) => {
    const { inputs, exampleSize, count } = demo.evalSet;
    const { preprocessing } = demo.signature.input;
    assert.equal(preprocessing.kind, 'text');
    const { vocabulary } = preprocessing as { vocabulary: string[] };
    const messages: number[][] = [];
    for (let i = 0; i < count && messages.length < 64; i++) {
      const ids = Array.from(inputs.subarray(i * exampleSize, (i + 1) * exampleSize));
      if (ids.filter((id) => id !== 0).length >= 10) messages.push(ids);
    }
    let seed = 5;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const edited: number[][] = [];
    const predicted: string[] = [];
    for (let start = 0; start < messages.length; start += 8) {
      const batch = messages.slice(start, start + 8);
      const { instances } = await explained(
        server,
        { token: owner.token },
        {
          model: demo.slug,
          inputs: batch,
          method: 'KERNEL_SHAP',
          samples: 256,
        },
      );
      instances.forEach((instance, k) => {
        const ids = batch[k]!;
        const positions = ids.flatMap((id, p) => (id === 0 ? [] : [p]));
        assert.equal(instance.values.length, positions.length);
        // Sent as ids: each token is named by the vocabulary.
        assert.deepEqual(
          instance.tokens,
          positions.map((p) => vocabulary[ids[p]!]),
        );
        const top = [...positions.keys()].sort((a, b) => instance.values[b]! - instance.values[a]!).slice(0, 5);
        const randomOnes = new Set<number>();
        while (randomOnes.size < 5) randomOnes.add(Math.floor(random() * positions.length));
        for (const removed of [top, [...randomOnes]]) {
          const copy = [...ids];
          for (const j of removed) copy[positions[j]!] = 0;
          edited.push(copy);
        }
        predicted.push(instance.predicted.label);
      });
    }
    let topFlips = 0;
    let randomFlips = 0;
    for (let start = 0; start < edited.length; start += 64) {
      const res = await server.gql(
        PREDICT,
        { input: { model: demo.slug, inputs: edited.slice(start, start + 64) } },
        {
          token: owner.token,
        },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      (res.data!.predict.outputs as { label: string }[]).forEach((output, n) => {
        const message = (start + n) >> 1;
        if (output.label === predicted[message]) return;
        if ((start + n) % 2 === 0) topFlips++;
        else randomFlips++;
      });
    }
    const counts = `over ${messages.length} held-out messages of ≥ 10 tokens: top-5 removal flipped ${topFlips}, random-5 removal ${randomFlips}`;
    t.diagnostic(counts);
    assert.ok(topFlips > randomFlips, counts);
  });

  it("keeps the server's event loop free while Kernel SHAP runs 2048 coalitions over a long message", async (t) => {
    const { inputs, exampleSize, count } = demo.evalSet;
    let longest: number[] = [];
    for (let i = 0; i < count; i++) {
      const ids = Array.from(inputs.subarray(i * exampleSize, (i + 1) * exampleSize));
      if (ids.filter((id) => id !== 0).length > longest.filter((id) => id !== 0).length) longest = ids;
    }
    const features = longest.filter((id) => id !== 0).length;
    // What the loop would be held for if the coalitions and the solve ran on it (measured here, before the run; said
    // beside the measurement).
    const started = performance.now();
    const coalitions = sampleCoalitions(features, 2048, 1);
    solveKernelShap(
      coalitions,
      features,
      new Float64Array(coalitions.count).map(() => Math.random()),
      1,
    );
    const onLoopMs = performance.now() - started;
    // The server runs in this process: its event loop is this one.
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const [instance] = (
      await explained(
        server,
        { token: owner.token },
        {
          model: demo.slug,
          inputs: [longest],
          method: 'KERNEL_SHAP',
          samples: 2048,
        },
      )
    ).instances;
    loop.disable();
    assert.ok(instance!.check!.error < 1e-3);
    const maxMs = loop.max / 1e6;
    const p99Ms = loop.percentile(99) / 1e6;
    const measured = `event loop max delay ${maxMs.toFixed(1)} ms (p99 ${p99Ms.toFixed(1)} ms) during the run; the same coalitions and solve over ${features} tokens take ${onLoopMs.toFixed(1)} ms on a thread`;
    t.diagnostic(measured);
    // The max also catches the OS descheduling this process on a loaded machine (2 cores shared here: up to ~250 ms
    // seen), so it gets a loose bound and the typical delay (p99) a tight one.
    assert.ok(maxMs < 500 && p99Ms < 50, measured);
  });
});
