// SIGTERM under load from clients on keep-alive connections loses nothing: every call is either answered (and
// billed exactly once) or refused before it ran (503 SERVICE_UNAVAILABLE, or a refused/closed connection), and
// the process exits 0.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { toArtifact } from '../inference/models.js';
import { createApiKey, signUp } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { buildMlp, PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../support/server-process.js';
import { createTestDatabase, startTestServer, type TestServer } from '../support/server.js';

const CLIENTS = 24;
/** Answers before the signal: enough that calls are surely in flight when it lands. */
const ANSWERS_BEFORE_SIGNAL = 4 * CLIENTS;

type Outcome =
  | { requestId: string; status: number; body: any; headers: http.IncomingHttpHeaders }
  | { requestId: string; failure: string };

/** One POST on a keep-alive agent; a socket failure (refused, reset, closed) is returned, not thrown. */
function post(agent: http.Agent, url: URL, body: string, headers: Record<string, string>, requestId: string) {
  return new Promise<Outcome>((resolve) => {
    const req = http.request(
      url,
      { agent, method: 'POST', headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({ requestId, status: res.statusCode!, body: JSON.parse(text), headers: res.headers }),
        );
        res.on('error', (error: NodeJS.ErrnoException) => resolve({ requestId, failure: error.code ?? error.message }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ requestId, failure: error.code ?? error.message }));
    req.end(body);
  });
}

describe('SIGTERM under keep-alive predict load', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let setup: TestServer;
  let dataDir: string;
  let server: ServerProcess;
  let stopping: ServerProcess | undefined;
  let sql: pg.Pool;
  let apiKey: string;
  let consumerId: string;
  let slug: string;
  let ownerToken: string;
  let APP_SECRET: string;
  before(async () => {
    database = await createTestDatabase();
    APP_SECRET = randomBytes(32).toString('hex');
    // Set-up goes through an in-process server on the same database; the signal goes to a real process.
    setup = await startTestServer({ DATABASE_URL: database.url, APP_SECRET });
    const owner = await signUp(setup, { role: 'OWNER' });
    ownerToken = owner.token;
    slug = (await publishedMlp(setup, { token: owner.token })).model.slug;
    const plan = await createPlan(setup, { token: owner.token }, slug, { predictionQuota: 1_000_000, period: 'TOTAL' });
    const consumer = await signUp(setup);
    consumerId = consumer.id;
    await accept(setup, { token: consumer.token }, plan.id);
    apiKey = (await createApiKey(setup, consumer.token, ['PREDICT'])).secret;
    await setup.stopKeepingDatabase();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-stop-'));
    server = await startServerProcess({
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      APP_SECRET,
      INFERENCE_WORKERS: '1',
      SHUTDOWN_GRACE_MS: '10000',
    });
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
  });
  after(async () => {
    for (const each of [server, stopping]) {
      if (each && each.child.exitCode === null) await stopServerProcess(each.child, 'SIGKILL');
    }
    await sql.end();
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('answers or refuses every call, bills exactly the answered ones, leaves no key running, exits 0', async () => {
    const url = new URL(server.url);
    const rows = randomRows(1, 784, 5);
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', resolve));
    let answered = 0;
    let signalled: (() => void) | undefined;
    const enoughAnswers = new Promise<void>((resolve) => (signalled = resolve));

    const client = async (index: number): Promise<Outcome[]> => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const outcomes: Outcome[] = [];
      try {
        for (let n = 0; ; n += 1) {
          const requestId = `c${index}-${n}`;
          const body = JSON.stringify({
            query: PREDICT,
            variables: { input: { model: slug, inputs: rows, requestId } },
          });
          const outcome = await post(agent, url, body, { 'x-api-key': apiKey }, requestId);
          outcomes.push(outcome);
          if (!('status' in outcome) || outcome.status !== 200) return outcomes;
          answered += 1;
          if (answered === ANSWERS_BEFORE_SIGNAL) signalled!();
        }
      } finally {
        agent.destroy();
      }
    };
    const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
    await enoughAnswers;
    server.child.kill('SIGTERM');
    const outcomes = (await Promise.all(clients)).flat();
    assert.equal(await exited, 0);

    const answers = new Map<string, string>();
    for (const outcome of outcomes) {
      if ('failure' in outcome) {
        assert.match(outcome.failure, /^(ECONNREFUSED|ECONNRESET|EPIPE|socket hang up)$/, outcome.requestId);
        continue;
      }
      if (outcome.status === 200) {
        assert.equal(outcome.body.errors, undefined, `${outcome.requestId}: ${JSON.stringify(outcome.body.errors)}`);
        answers.set(outcome.requestId, outcome.body.data.predict.id);
        continue;
      }
      assert.equal(outcome.status, 503, `${outcome.requestId}: ${JSON.stringify(outcome.body)}`);
      assert.equal(outcome.body.errors[0].extensions.code, 'SERVICE_UNAVAILABLE');
      assert.equal(outcome.headers.connection, 'close');
      assert.match(String(outcome.headers['retry-after']), /^\d+$/);
    }
    assert.ok(answers.size >= ANSWERS_BEFORE_SIGNAL, `${answers.size} answers`);
    // Every client was cut off by the stop: each one's last outcome is a refusal.
    assert.equal(outcomes.length - answers.size, CLIENTS);

    const { rows: records } = await sql.query<{ request_id: string; prediction_id: string; status: string }>(
      'SELECT request_id, prediction_id, status FROM usage_records WHERE consumer_id = $1 AND billable_units > 0',
      [consumerId],
    );
    const billed = new Map<string, string[]>();
    for (const record of records)
      billed.set(record.request_id, [...(billed.get(record.request_id) ?? []), record.prediction_id]);
    for (const [requestId, predictionId] of answers) {
      assert.deepEqual(billed.get(requestId), [predictionId], `${requestId}: billed once, as answered`);
    }
    const unanswered = [...billed.keys()].filter((requestId) => !answers.has(requestId));
    assert.deepEqual(unanswered, [], 'billed calls whose answer no client received');
    await assertLedgerHolds(sql);
    const { rows: running } = await sql.query('SELECT request_id FROM idempotency_keys WHERE response IS NULL');
    assert.deepEqual(running, [], 'idempotency keys left running');
  });

  it('finishes a request whose handler runs (an upload still arriving) and refuses one that had not started', async () => {
    const { child, url } = await startServerProcess({ DATABASE_URL: database.url, DATA_DIR: dataDir, APP_SECRET });
    stopping = { child, url };
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const { port } = new URL(url);
    const artifact = await toArtifact(buildMlp([8, 4, 2], 3));
    const form = new FormData();
    form.append('model.json', new Blob([JSON.stringify(artifact.modelJson)]), 'model.json');
    form.append('model.weights.bin', new Blob([artifact.weights]), 'model.weights.bin');
    const encoded = new Request('http://upload/', { method: 'POST', body: form });
    const uploadBody = Buffer.from(await encoded.arrayBuffer());
    // The upload's handler runs while its body arrives; the GraphQL request waits for its body before any handler.
    const upload = heldRequest(
      Number(port),
      `POST /v1/artifacts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ownerToken}\r\ncontent-type: ${encoded.headers.get('content-type')}\r\n`,
      uploadBody,
      100,
    );
    const query = Buffer.from(JSON.stringify({ query: '{ me { id } }' }));
    const graphql = heldRequest(
      Number(port),
      `POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n`,
      query,
      5,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    for (const deadline = Date.now() + 10_000; !(await refusesConnections(Number(port)));) {
      assert.ok(Date.now() < deadline, 'the server stopped listening within 10 s of SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    graphql.finish();
    const refused = await graphql.answered;
    assert.equal(refused.status, 503, refused.body);
    assert.equal(JSON.parse(refused.body).errors[0].extensions.code, 'SERVICE_UNAVAILABLE');
    assert.match(refused.headers, /^connection: close$/m);
    assert.match(refused.headers, /^retry-after: \d+$/m);
    upload.finish();
    const uploaded = await upload.answered;
    assert.equal(uploaded.status, 201, uploaded.body);
    assert.match(uploaded.headers, /^connection: close$/m);
    assert.equal(await exited, 0);
  });
});

/** An HTTP/1.1 request written by hand, so that its body can be held back; resolves with the raw answer. */
function heldRequest(port: number, head: string, body: Buffer, sendFirst: number) {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (received += chunk));
  const answered = new Promise<{ status: number; headers: string; body: string }>((resolve) => {
    socket.on('close', () => {
      const [headers = '', ...rest] = received.split('\r\n\r\n');
      resolve({
        status: Number(headers.split(' ', 2)[1]),
        headers: headers.toLowerCase(),
        body: rest.join('\r\n\r\n'),
      });
    });
  });
  socket.on('error', () => undefined);
  socket.write(`${head}content-length: ${body.length}\r\n\r\n`);
  socket.write(body.subarray(0, sendFirst));
  return { answered, finish: () => socket.write(body.subarray(sendFirst)) };
}

async function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(port, '127.0.0.1');
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', () => resolve(true));
  });
}
