// The "done when": an asynchronous prediction completes and its webhook arrives, signed and verifiable
// with the README's own TypeScript code, at the prediction's own URL and at an endpoint subscribed to the event
// (a real receiver on 127.0.0.1, real HTTP, the job queue running the prediction).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { signUp } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

type Verify = (secret: string, headers: Record<string, string | undefined>, body: string) => boolean;

interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
}

describe('an asynchronous prediction and its webhook', () => {
  let server: TestServer;
  let receiver: http.Server;
  let base: string;
  const received: Received[] = [];
  let scratch: string;
  let verifyWebhook: Verify;

  before(async () => {
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const headers = req.headers as Record<string, string>;
        received.push({ path: req.url!, headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    // The README's ```ts block under "Verifying a delivery", as a consumer would paste it.
    const readme = await readFile('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('### Verifying a delivery'));
    const start = section.indexOf('```ts\n') + '```ts\n'.length;
    scratch = await mkdtemp(path.join(os.tmpdir(), 'async-webhook-test-'));
    await writeFile(path.join(scratch, 'verify.ts'), section.slice(start, section.indexOf('```', start)));
    ({ verifyWebhook } = (await import(path.join(scratch, 'verify.ts'))) as { verifyWebhook: Verify });
    server = await startTestServer({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', JOBS_POLLING_INTERVAL_SECONDS: '1' });
  });
  after(async () => {
    await server?.close();
    await new Promise((resolve) => receiver.close(resolve));
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
      { input: { url: `${base}/endpoint`, events: ['PREDICTION_COMPLETED'] } },
      auth,
    );
    assert.equal(endpoint.errors, undefined, JSON.stringify(endpoint.errors));
    const endpointSecret = endpoint.data!.createWebhookEndpoint.secret as string;
    const rotated = await server.gql(`mutation { rotateDefaultWebhookSecret { secret } }`, {}, auth);
    assert.equal(rotated.errors, undefined, JSON.stringify(rotated.errors));
    const defaultSecret = rotated.data!.rotateDefaultWebhookSecret.secret as string;

    const created = await server.gql(
      `mutation($input: CreatePredictionInput!) { createPrediction(input: $input) { id status } }`,
      { input: { model: model.slug, inputs: randomRows(2, 784, 1), webhook: `${base}/own` } },
      auth,
    );
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    const { id } = created.data!.createPrediction;

    // Polls as the receiver waits: the bound only stops a broken run from hanging the suite.
    for (let attempt = 0; attempt < 600; attempt++) {
      if (['/own', '/endpoint'].every((route) => received.some((r) => r.path === route))) break;
      await sleep(100);
    }
    for (const [route, secret] of [
      ['/own', defaultSecret],
      ['/endpoint', endpointSecret],
    ] as const) {
      const delivery = received.find((r) => r.path === route);
      assert.ok(delivery, `a delivery reached ${route}`);
      assert.equal(verifyWebhook(secret, delivery.headers, delivery.body), true, `${route} verifies`);
      assert.equal(verifyWebhook(secret, delivery.headers, delivery.body.replace('SUCCEEDED', 'FAILED')), false);
      const body = JSON.parse(delivery.body);
      assert.equal(body.type, 'prediction.completed');
      assert.equal(body.data.id, id);
      assert.equal(body.data.status, 'SUCCEEDED');
      assert.equal(body.data.metrics.units, 2);
    }
    // One event, one webhook-id at both destinations (receivers dedupe on it).
    const ids = new Set(received.map((r) => r.headers['webhook-id']));
    assert.equal(ids.size, 1);

    const done = await server.gql(`query($id: ID!) { prediction(id: $id) { status outputs { label } } }`, { id }, auth);
    assert.equal(done.data!.prediction.status, 'SUCCEEDED');
    assert.equal(done.data!.prediction.outputs.length, 2);
  });
});
