// The HTTP transport on node:http (src/server/http-server.ts and its helpers): client addresses under
// TRUST_PROXY, encoded and oversized bodies, charsets, routing details, headers, and the access log.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { SIGN_UP, uniqueEmail } from '../support/fixtures.js';
import { startServerProcess, stopServerProcess } from '../support/server-process.js';
import { createTestDatabase, startTestServer, type TestServer } from '../support/server.js';

const TYPENAME = JSON.stringify({ query: '{ __typename }' });

async function post(server: TestServer, body: string | Buffer, headers: Record<string, string>) {
  const response = await fetch(server.url, { method: 'POST', headers, body });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

/** Signs up with an X-Forwarded-For header and returns the address its audit event recorded. */
async function auditedAddress(server: TestServer, forwardedFor: string): Promise<string> {
  const email = uniqueEmail('proxy');
  const input = { email, password: 'a sturdy passphrase', displayName: 'P', role: 'CONSUMER' };
  const res = await post(server, JSON.stringify({ query: SIGN_UP, variables: { input } }), {
    'content-type': 'application/json',
    'x-forwarded-for': forwardedFor,
  });
  assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
  const { rows } = await server.sql.query(
    `SELECT ip FROM audit_events WHERE action = 'auth.sign_up' AND actor_id = $1`,
    [res.body.data.signUp.user.id],
  );
  return rows[0].ip;
}

/** Writes a request head by hand (no body) and resolves with the raw answer once the server closes. */
function rawExchange(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    socket.write(head);
  });
}

describe('the HTTP transport', () => {
  let server: TestServer;
  let behindProxy: TestServer;
  before(async () => {
    server = await startTestServer({ BODY_LIMIT_BYTES: '4096' });
    behindProxy = await startTestServer({ TRUST_PROXY: 'true' });
  });
  after(async () => {
    await server.close();
    await behindProxy.close();
  });

  it('takes the client address from X-Forwarded-For only with TRUST_PROXY', async () => {
    assert.equal(await auditedAddress(behindProxy, '203.0.113.7, 10.0.0.1'), '203.0.113.7');
    assert.match(await auditedAddress(server, '203.0.113.7, 10.0.0.1'), /127\.0\.0\.1/);
    // A first entry that is no address would key the per-IP throttles as the client chose: the socket's counts.
    assert.match(await auditedAddress(behindProxy, ', 203.0.113.7'), /127\.0\.0\.1/);
    assert.match(await auditedAddress(behindProxy, 'anything-at-all'), /127\.0\.0\.1/);
  });

  it('reads gzip, deflate and brotli bodies, limits them decoded, and refuses other encodings (415)', async () => {
    const encodings = {
      gzip: promisify(zlib.gzip),
      deflate: promisify(zlib.deflate),
      br: promisify(zlib.brotliCompress),
    };
    for (const [encoding, encode] of Object.entries(encodings)) {
      const res = await post(server, await encode(TYPENAME), {
        'content-type': 'application/json',
        'content-encoding': encoding,
      });
      assert.equal(res.status, 200, encoding);
      assert.equal(res.body.data.__typename, 'Query');
    }
    // 8 KiB of JSON compresses to a few dozen bytes: the limit (4 KiB) is on what it decodes to.
    const bomb = JSON.stringify({ query: '{ __typename }', variables: { pad: ' '.repeat(8192) } });
    const inflated = await post(server, await encodings.gzip(bomb), {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    assert.equal(inflated.status, 413);
    assert.equal(inflated.body.errors[0].extensions.code, 'PAYLOAD_TOO_LARGE');
    const unknown = await post(server, TYPENAME, { 'content-type': 'application/json', 'content-encoding': 'zip' });
    assert.equal(unknown.status, 415);
    assert.equal(unknown.body.errors[0].extensions.code, 'BAD_REQUEST');
  });

  it('refuses a body declared over the limit at once, without waiting for it, and closes the connection', async () => {
    const { port } = new URL(server.url);
    const answer = await rawExchange(
      Number(port),
      'POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /^connection: close$/im);
    assert.match(answer, /"code":"PAYLOAD_TOO_LARGE"/);
  });

  it('takes JSON in UTF-8 only (415 for another charset), and leaves other media types to Apollo', async () => {
    const utf8 = await post(server, TYPENAME, { 'content-type': 'application/json; charset=UTF-8' });
    assert.equal(utf8.status, 200);
    const graphqlJson = await post(server, TYPENAME, { 'content-type': 'application/graphql+json' });
    assert.equal(graphqlJson.status, 200);
    const latin1 = await post(server, TYPENAME, { 'content-type': 'application/json; charset=latin1' });
    assert.equal(latin1.status, 415);
    assert.equal(latin1.body.errors[0].extensions.code, 'BAD_REQUEST');
    const text = await post(server, TYPENAME, { 'content-type': 'text/plain' });
    assert.equal(text.status, 400, 'CSRF prevention refuses a simple request');
    const notJson = await post(server, '"a string"', { 'content-type': 'application/json' });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.errors[0].extensions.code, 'BAD_REQUEST');
  });

  it('answers HEAD and a trailing slash on GET routes, and 404 for other methods', async () => {
    const head = await fetch(`${server.origin}/healthz`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await fetch(`${server.origin}/healthz/`)).status, 200);
    // Downloads and exports bill, audit or run a query: HEAD would do that and deliver nothing, so it is not
    // routed (without credentials a GET is refused 401: the 404 shows the handler never ran).
    assert.equal((await fetch(`${server.origin}/v1/usage.csv`)).status, 401);
    assert.equal((await fetch(`${server.origin}/v1/usage.csv`, { method: 'HEAD' })).status, 404);
    const download = `${server.origin}/v1/versions/${randomUUID()}/model.json`;
    assert.equal((await fetch(download, { method: 'HEAD' })).status, 404);
    const posted = await fetch(`${server.origin}/healthz`, { method: 'POST' });
    assert.equal(posted.status, 404);
    assert.equal(((await posted.json()) as any).errors[0].extensions.code, 'NOT_FOUND');
  });

  it('sends a request id on every answer and no-store on GraphQL answers', async () => {
    const res = await post(server, TYPENAME, { 'content-type': 'application/json', 'x-request-id': 'trace-7' });
    assert.equal(res.headers.get('x-request-id'), 'trace-7');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const jwks = await fetch(`${server.origin}/.well-known/jwks.json`);
    assert.match(jwks.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/);
    assert.equal(jwks.headers.get('cache-control'), 'public, max-age=300');
  });
});

describe('the access log', () => {
  it('writes one line per request, with its request id, status and method, at info', async () => {
    const database = await createTestDatabase();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-access-log-'));
    const { child, url } = await startServerProcess({
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      APP_SECRET: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'info',
    });
    try {
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'access-log-1' },
        body: TYPENAME,
      });
      assert.equal(response.status, 200);
      // Lines are buffered for at most 250 ms (src/server/logger.ts); wait for it, without timing it.
      const line = () =>
        output
          .split('\n')
          .filter((text) => text.includes('"access-log-1"'))
          .map((text) => JSON.parse(text) as Record<string, unknown>);
      for (const giveUp = Date.now() + 10_000; line().length === 0;) {
        assert.ok(Date.now() < giveUp, `no access-log line for the request in:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const [entry, ...others] = line();
      assert.deepEqual(others, []);
      assert.equal(entry!.msg, 'request completed');
      assert.equal(entry!.level, 30);
      assert.equal(entry!.method, 'POST');
      assert.equal(entry!.path, '/graphql');
      assert.equal(entry!.status, 200);
    } finally {
      assert.equal(await stopServerProcess(child), 0);
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
