// The typed client (modelmarket/client) against a real server over HTTP: sessions and their refresh, artifact
// upload from a directory, publish, predict, typed errors, and retries driven by the server's real 429 and 503.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BadArtifactError,
  BadUserInputError,
  ConflictError,
  ForbiddenError,
  ModelmarketClient,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitedError,
  UnauthenticatedError,
  type RetryEvent,
  type SessionTokens,
} from 'modelmarket/client';
import { signUp } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertClose, buildMlp, DIGITS, expectedOutputs, publishedMlp, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { until } from '../support/until.js';
import { expiredCopy, saveModelDir, signingKeyEnv } from './support.js';

describe('typed client', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer(signingKeyEnv);
  });
  after(() => server.close());

  it('logs in, uploads a sharded model directory with progress, publishes it and predicts', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const saved: SessionTokens[] = [];
    const client = new ModelmarketClient({
      url: server.origin,
      email: owner.email,
      password: owner.password,
      onTokens: (tokens) => void saved.push(tokens),
    });
    assert.equal((await client.me())!.email, owner.email);
    assert.equal(saved.length, 1, 'the log-in hands its tokens to onTokens');

    const tfModel = buildMlp([784, 16, 10], 11);
    const dir = await saveModelDir(tfModel, 3);
    const progress: [number, number][] = [];
    const artifact = await client.uploadArtifact(dir, { onProgress: (sent, total) => progress.push([sent, total]) });
    assert.match(artifact.sha256, /^[0-9a-f]{64}$/);
    const [lastSent, total] = progress.at(-1)!;
    assert.equal(lastSent, total);
    assert.ok(total > artifact.sizeBytes, 'the multipart body holds every file');
    assert.ok(progress.every(([sent], i) => i === 0 || sent >= progress[i - 1]![0]));

    const model = await client.createModel({
      slug: `client-${randomUUID().slice(0, 8)}`,
      name: 'Digits',
      task: 'IMAGE_CLASSIFICATION',
      visibility: 'PUBLIC',
    });
    const version = await client.publishModelVersion({
      model: model.slug,
      version: '1.0.0',
      artifactId: artifact.id,
      labels: DIGITS,
      watermark: false,
    });
    assert.equal(version.version, '1.0.0');
    assert.equal(version.watermark.marked, false);

    const rows = randomRows(3, 784, 5);
    const prediction = await client.predict({ model: model.slug, inputs: rows });
    assert.match(prediction.requestId!, /^[0-9a-f-]{36}$/, 'predict sets a requestId when none is given');
    const expected = expectedOutputs(tfModel, rows, [784]);
    prediction.outputs.forEach((output, i) => assertClose(output.values, expected[i]!));

    // The same requestId is answered from the first call: a retry is never a second call.
    const again = await client.predict({ model: model.slug, inputs: rows, requestId: prediction.requestId });
    assert.equal(again.id, prediction.id);

    // The same call queued: answered at once, then run in the background with the same outputs.
    const queued = await client.createPrediction({ model: model.slug, inputs: rows });
    assert.equal(queued.status, 'QUEUED');
    const polled = await until(async () => {
      const prediction = await client.prediction(queued.id);
      return prediction.status === 'QUEUED' || prediction.status === 'RUNNING' ? undefined : prediction;
    });
    assert.equal(polled.status, 'SUCCEEDED', JSON.stringify(polled.error));
    assert.deepEqual(polled.outputs, prediction.outputs);
    await assert.rejects(client.cancelPrediction(queued.id), ConflictError);
  });

  it('raises typed errors that carry code, reason, field and HTTP status', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token });
    const ownerClient = new ModelmarketClient({ url: server.url, email: owner.email, password: owner.password });

    await assert.rejects(ownerClient.predict({ model: model.slug, inputs: [[1, 2, 3]] }), (error) => {
      assert.ok(error instanceof BadUserInputError);
      assert.equal(error.code, 'BAD_USER_INPUT');
      assert.match(error.field!, /^input\.inputs/);
      return true;
    });
    await assert.rejects(ownerClient.predict({ model: 'no-such-model', inputs: [[1]] }), (error) => {
      assert.ok(error instanceof NotFoundError);
      assert.equal(error.code, 'NOT_FOUND');
      return true;
    });
    await assert.rejects(ownerClient.uploadArtifact(await mkdtemp(path.join(os.tmpdir(), 'empty-'))), (error) => {
      assert.ok(error instanceof BadArtifactError);
      assert.match(error.message, /no model\.json/);
      return true;
    });

    const consumer = await signUp(server);
    const consumerClient = new ModelmarketClient({
      url: server.url,
      accessToken: consumer.token,
      refreshToken: consumer.refreshToken,
    });
    await assert.rejects(consumerClient.predict({ model: model.slug, inputs: randomRows(1, 784, 1) }), (error) => {
      assert.ok(error instanceof ForbiddenError);
      assert.equal(error.reason, 'NO_CONTRACT');
      return true;
    });
    // The artifact route's refusal is typed the same way, with its HTTP status.
    await assert.rejects(consumerClient.uploadArtifact(await saveModelDir(buildMlp([4, 2], 1))), (error) => {
      assert.ok(error instanceof ForbiddenError);
      assert.equal(error.httpStatus, 403);
      return true;
    });
    // And keeps the field a /v1 route names.
    await assert.rejects(consumerClient.usageCsv({ from: 'yesterday' }), (error) => {
      assert.ok(error instanceof BadUserInputError);
      assert.equal(error.httpStatus, 400);
      assert.equal(error.field, 'from');
      return true;
    });
    await assert.rejects(
      new ModelmarketClient({ url: server.url }).logIn(owner.email, 'a wrong password!'),
      (error) => {
        assert.ok(error instanceof UnauthenticatedError);
        assert.equal(error.httpStatus, 401);
        return true;
      },
    );
  });

  it('refuses weight files and model.json that are links leading outside the model directory', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const client = new ModelmarketClient({
      url: server.url,
      accessToken: owner.token,
      refreshToken: owner.refreshToken,
    });
    const secret = path.join(await mkdtemp(path.join(os.tmpdir(), 'secret-')), 'id_rsa');
    await writeFile(secret, 'not for the server');
    const refused = (pattern: RegExp) => (error: unknown) => {
      assert.ok(error instanceof BadArtifactError);
      assert.equal(error.code, 'BAD_ARTIFACT');
      assert.match(error.message, pattern);
      return true;
    };

    // A weights file named in model.json that is a link to a file elsewhere: nothing is sent.
    const dir = await saveModelDir(buildMlp([4, 2], 3));
    const [weights] = (
      JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as {
        weightsManifest: { paths: string[] }[];
      }
    ).weightsManifest[0]!.paths;
    await rename(path.join(dir, weights!), path.join(dir, 'real.bin'));
    await symlink(secret, path.join(dir, weights!));
    await assert.rejects(client.uploadArtifact(dir), refused(/is a link that leads outside/));

    // model.json itself as such a link.
    const linkedJson = await mkdtemp(path.join(os.tmpdir(), 'linked-json-'));
    await symlink(path.join(dir, 'model.json'), path.join(linkedJson, 'model.json'));
    await assert.rejects(client.uploadArtifact(linkedJson), refused(/model\.json leads outside/));

    // Links that stay inside are followed: the directory reached through a link, a weights file linked to a
    // file beside it.
    await rm(path.join(dir, weights!));
    await symlink('real.bin', path.join(dir, weights!));
    const viaLink = path.join(linkedJson, 'model-dir');
    await symlink(dir, viaLink);
    const artifact = await client.uploadArtifact(viaLink);
    assert.match(artifact.sha256, /^[0-9a-f]{64}$/);
  });

  it('refreshes an expired access token once for concurrent calls and hands on the new single-use refresh token', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const saved: SessionTokens[] = [];
    const client = new ModelmarketClient({
      url: server.url,
      accessToken: expiredCopy(owner.token),
      refreshToken: owner.refreshToken,
      onTokens: (tokens) => void saved.push(tokens),
    });
    const answers = await Promise.all([client.me(), client.me(), client.apiKeys()]);
    assert.equal(answers[0]!.id, owner.id);
    assert.equal(saved.length, 1, 'one refresh for the three calls');
    assert.notEqual(saved[0]!.refreshToken, owner.refreshToken);
    assert.equal(client.session!.refreshToken, saved[0]!.refreshToken);

    // The artifact route says "expired" only in WWW-Authenticate: the upload is refreshed and sent again.
    const uploader = new ModelmarketClient({
      url: server.url,
      accessToken: expiredCopy(saved[0]!.accessToken),
      refreshToken: saved[0]!.refreshToken,
      onTokens: (tokens) => void saved.push(tokens),
    });
    const artifact = await uploader.uploadArtifact(await saveModelDir(buildMlp([4, 3], 2)));
    assert.match(artifact.id, /^[0-9a-f-]{36}$/);
    assert.equal(saved.length, 2);

    // A spent refresh token (and no password to fall back on) is the caller's to handle.
    const stale = new ModelmarketClient({
      url: server.url,
      accessToken: expiredCopy(owner.token),
      refreshToken: owner.refreshToken,
    });
    await assert.rejects(stale.me(), { name: 'UnauthenticatedError' });
  });

  it('waits out RATE_LIMITED as Retry-After says, and returns the error when the wait is longer than allowed', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token });
    const plan = await createPlan(server, { token: owner.token }, model.slug, { rateLimitPerMinute: 1 });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const retries: RetryEvent[] = [];
    const client = new ModelmarketClient({
      url: server.url,
      accessToken: consumer.token,
      refreshToken: consumer.refreshToken,
      retry: { maxDelayMs: 5_000 },
      onRetry: (event) => retries.push(event),
    });
    const inputs = randomRows(1, 784, 2);
    await client.predict({ model: model.slug, inputs });
    // The next minute's window is a minute away: longer than this client waits, so it gets the error at once.
    await assert.rejects(client.predict({ model: model.slug, inputs }), (error) => {
      assert.ok(error instanceof RateLimitedError);
      assert.equal(error.httpStatus, 429);
      assert.ok(error.retryAfter! > 5 && error.retryAfter! <= 60, String(error.retryAfter));
      return true;
    });
    assert.equal(retries.length, 0);

    // The window as if it had started 58 s ago: the server now asks for a wait of about 2 s, which the client takes.
    await server.sql.query(`UPDATE contracts SET rate_window_start = now() - interval '58 seconds' WHERE id = $1`, [
      contract.id,
    ]);
    const prediction = await client.predict({ model: model.slug, inputs });
    assert.equal(prediction.contractId, contract.id);
    assert.equal(retries.length, 1);
    const [retry] = retries;
    assert.ok(retry!.error instanceof RateLimitedError);
    assert.ok(retry!.delayMs >= retry!.error.retryAfter! * 1000, `${retry!.delayMs} ms`);
    const { rows } = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    assert.equal(rows[0].predictions_used, 2, 'the refused calls were not billed');
  });
});

describe('typed client: OVERLOADED', () => {
  let server: TestServer;

  before(async () => {
    // One worker and room for one waiting call: concurrent calls beyond that are turned away with OVERLOADED.
    server = await startTestServer({ INFERENCE_WORKERS: '1', INFERENCE_MAX_QUEUE: '64', INFERENCE_BATCHING: 'false' });
  });
  after(() => server.close());

  it('retries overloaded predicts with backoff until each is served, billing each call once', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const { model } = await publishedMlp(server, { token: owner.token }, { sizes: [784, 1024, 1024, 10] });
    const plan = await createPlan(server, { token: owner.token }, model.slug);
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    const retries: RetryEvent[] = [];
    const client = new ModelmarketClient({
      url: server.url,
      accessToken: consumer.token,
      refreshToken: consumer.refreshToken,
      retry: { maxAttempts: 30, baseDelayMs: 50, maxDelayMs: 3_000 },
      onRetry: (event) => retries.push(event),
    });
    const calls = 10;
    const instances = 64;
    const predictions = await Promise.all(
      Array.from({ length: calls }, (_, i) =>
        client.predict({ model: model.slug, inputs: randomRows(instances, 784, i) }),
      ),
    );
    assert.equal(new Set(predictions.map((p) => p.id)).size, calls);
    assert.ok(retries.length > 0, 'some calls were turned away');
    assert.ok(retries.every((r) => r.error.code === 'OVERLOADED' && r.error.httpStatus === 503));
    assert.ok(
      retries.every((r) => r.delayMs >= 1000),
      'OVERLOADED asks for a second',
    );
    const { rows } = await server.sql.query('SELECT predictions_used FROM contracts WHERE id = $1', [contract.id]);
    assert.equal(rows[0].predictions_used, calls * instances);
    const usage = await client.usage({ groupBy: 'MODEL' });
    assert.equal(usage.totals.billableUnits, calls * instances);
    assert.equal(usage.totals.predictions, calls * instances);
  });
});

describe('typed client: upload limit', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ ARTIFACT_MAX_BYTES: '1024' });
  });
  after(() => server.close());

  it('reports an artifact over the limit as PayloadTooLargeError, refused before the body was read', async () => {
    const owner = await signUp(server, { role: 'OWNER' });
    const client = new ModelmarketClient({
      url: server.url,
      accessToken: owner.token,
      refreshToken: owner.refreshToken,
    });
    const dir = await saveModelDir(buildMlp([784, 64, 10], 4));
    await assert.rejects(client.uploadArtifact(dir), (error) => {
      assert.ok(error instanceof PayloadTooLargeError);
      assert.equal(error.httpStatus, 413);
      assert.match(error.message, /limited to 1024 bytes/);
      return true;
    });
    // The connection the refusal cut short leaves the client usable.
    assert.equal((await client.me())!.id, owner.id);
  });
});
