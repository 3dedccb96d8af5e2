// The "done when": an asynchronous prediction completes and its webhook arrives, signed and verifiable
// with the README's own TypeScript code, at the prediction's own URL and at an endpoint subscribed to the event
// (a real receiver on 127.0.0.1, real HTTP, the job queue running the prediction).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { signUp } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { readmeVerifier, startReceiver, type VerifyWebhook } from '../support/webhooks.js';

describe('an asynchronous prediction and its webhook', () => {
  let server: TestServer;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let scratch: string;
  let verifyWebhook: VerifyWebhook;

  before(async () => {
    receiver = await startReceiver();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'async-webhook-test-'));
    verifyWebhook = await readmeVerifier(scratch);
    server = await startTestServer({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', JOBS_POLLING_INTERVAL_SECONDS: '1' });
  });
  after(async () => {
    await server?.close();
    await receiver.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('completes, and its prediction.completed arrives signed at its own URL and at the subscribed endpoint', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token });
    const plan = await createPlan(server, { token: owner.token }, model.slug, { predictionQuota: 10 });
    const consumer = await signUp(server);
    await accept(server, { token: consumer.token }, plan.id);
    const auth = { token: consumer.token };

    const endpoint = await server.gql(
      `mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret } }`,
      { input: { url: receiver.url('/ok-endpoint'), events: ['PREDICTION_COMPLETED'] } },
      auth,
    );
    assert.equal(endpoint.errors, undefined, JSON.stringify(endpoint.errors));
    const endpointSecret = endpoint.data!.createWebhookEndpoint.secret as string;
    const rotated = await server.gql(`mutation { rotateDefaultWebhookSecret { secret } }`, {}, auth);
    assert.equal(rotated.errors, undefined, JSON.stringify(rotated.errors));
    const defaultSecret = rotated.data!.rotateDefaultWebhookSecret.secret as string;

    const created = await server.gql(
      `mutation($input: CreatePredictionInput!) { createPrediction(input: $input) { id status } }`,
      { input: { model: model.slug, inputs: randomRows(2, 784, 1), webhook: receiver.url('/ok-own') } },
      auth,
    );
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    const { id } = created.data!.createPrediction;

    const deliveries = await until(() => {
      const own = receiver.received.find((r) => r.path === '/ok-own');
      const subscribed = receiver.received.find((r) => r.path === '/ok-endpoint');
      return own && subscribed ? { own, subscribed } : undefined;
    });
    for (const [route, delivery, secret] of [
      ['own URL', deliveries.own, defaultSecret],
      ['endpoint', deliveries.subscribed, endpointSecret],
    ] as const) {
      const headers = delivery.headers as Record<string, string>;
      assert.equal(verifyWebhook(secret, headers, delivery.body), true, `the delivery to the ${route} verifies`);
      assert.equal(verifyWebhook(secret, headers, delivery.body.replace('SUCCEEDED', 'FAILED')), false);
      const body = JSON.parse(delivery.body);
      assert.equal(body.type, 'prediction.completed');
      assert.equal(body.data.id, id);
      assert.equal(body.data.status, 'SUCCEEDED');
      assert.equal(body.data.metrics.units, 2);
    }
    // One event, one webhook-id at both destinations (receivers dedupe on it).
    const ids = new Set(receiver.received.map((r) => r.headers['webhook-id']));
    assert.equal(ids.size, 1);

    const done = await server.gql(`query($id: ID!) { prediction(id: $id) { status outputs { label } } }`, { id }, auth);
    assert.equal(done.data!.prediction.status, 'SUCCEEDED');
    assert.equal(done.data!.prediction.outputs.length, 2);
  });
});
