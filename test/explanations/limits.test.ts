// What one account can ask of explain: a few calls at once (owners too, who explain free), and no answer larger than
// predict's output budget, refused before anything is decoded or run. Real HTTP, the demo MNIST MLP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { explain, explained, publishedDemo } from './support.js';

/** Two 784-value digits fit; three do not. */
const MAX_OUTPUT_VALUES = 2000;

describe('explain: per-account concurrency and the answer budget', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let demo: Awaited<ReturnType<typeof publishedDemo>>;
  before(async () => {
    server = await startTestServer({
      EXPLAIN_MAX_CONCURRENT_PER_USER: '2',
      EXPLAIN_MAX_OUTPUT_VALUES: String(MAX_OUTPUT_VALUES),
    });
    owner = await signUp(server, { role: 'OWNER' });
    demo = await publishedDemo(server, { token: owner.token }, 'mnist-mlp');
  });
  after(() => server.close());

  const digit = (i: number) => {
    const { inputs, exampleSize } = demo.evalSet;
    const flat = Array.from(inputs.subarray(i * exampleSize, (i + 1) * exampleSize));
    return Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [flat[r * 28 + c]!]));
  };

  it('an account runs at most EXPLAIN_MAX_CONCURRENT_PER_USER calls at once: the others are RATE_LIMITED', async () => {
    const input = { model: demo.slug, inputs: [digit(0), digit(1)], method: 'KERNEL_SHAP', samples: 2048 };
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => explain(server, { token: owner.token }, input)),
    );
    const refused = responses.filter((res) => res.errors !== undefined);
    assert.ok(refused.length >= 1 && refused.length <= 3, `${refused.length} of 5 refused`);
    for (const res of refused) {
      assert.equal(res.errors![0]!.extensions!.code, 'RATE_LIMITED', JSON.stringify(res.errors));
      assert.ok((res.errors![0]!.extensions!.retryAfter as number) >= 1);
    }
    for (const res of responses.filter((r) => r.errors === undefined)) {
      assert.equal(res.data!.explain.instances.length, 2);
    }
    // The slots were given back.
    const again = await Promise.all(
      [0, 1].map(() => explained(server, { token: owner.token }, { ...input, method: 'OCCLUSION', samples: null })),
    );
    assert.equal(again.length, 2);
  });

  it('an answer over the output budget is refused with BAD_USER_INPUT before the instances are read', async () => {
    const res = await explain(
      server,
      { token: owner.token },
      { model: demo.slug, inputs: [digit(0), digit(1), digit(2)], method: 'OCCLUSION' },
    );
    assert.equal(res.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(res.errors));
    assert.match(res.errors![0]!.message, /784 values.*at most 2 instances fit in one call's 2000/);
    // Malformed instances get the same answer: the size is checked before anything is decoded.
    const malformed = await explain(
      server,
      { token: owner.token },
      { model: demo.slug, inputs: [[1], 'not an image', { x: 1 }], method: 'INTEGRATED_GRADIENTS' },
    );
    assert.match(malformed.errors![0]!.message, /at most 2 instances fit/);
    const fits = await explained(
      server,
      { token: owner.token },
      { model: demo.slug, inputs: [digit(0), digit(1)], method: 'OCCLUSION' },
    );
    assert.equal(fits.instances.length, 2);
  });
});
