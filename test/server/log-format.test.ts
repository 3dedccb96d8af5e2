// LOG_FORMAT: `npm start` writes human lines when asked (the default on a terminal) and one JSON object a line
// otherwise, and the buffered access log still reaches the output before the process exits.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase } from '../support/server.js';
import { startServerProcess, stopServerProcess } from '../support/server-process.js';

/** Starts `npm start` with `env`, makes one GraphQL request, stops it, and returns what it wrote after starting. */
async function logsOfOneRequest(env: Record<string, string>): Promise<{ lines: string[]; requestId: string }> {
  const { child, url } = await startServerProcess({ LOG_LEVEL: 'info', ...env });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ __typename }' }),
  });
  assert.equal(response.status, 200);
  const requestId = response.headers.get('x-request-id')!;
  assert.equal(await stopServerProcess(child), 0);
  // Colours only when the output is a terminal; stripped in case the environment forces them.
  const lines = output
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n')
    .filter(Boolean);
  return { lines, requestId };
}

describe('LOG_FORMAT', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  before(async () => {
    database = await createTestDatabase();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-logs-'));
  });
  after(async () => {
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('pretty: one human line per request (time, level, method, path, status, duration), no JSON objects', async () => {
    const { lines, requestId } = await logsOfOneRequest({
      LOG_FORMAT: 'pretty',
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
    });
    const access = lines.filter((line) => line.includes(requestId));
    assert.equal(access.length, 1, lines.join('\n'));
    assert.match(access[0]!, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: POST \/graphql 200 \d+(\.\d)? ms \{"reqId":"[^"]+"\}$/);
    assert.ok(
      lines.some((line) => /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: stopped \{"ms":\d+\}$/.test(line)),
      lines.join('\n'),
    );
    assert.ok(
      lines.every((line) => !line.startsWith('{')),
      lines.join('\n'),
    );
  });

  it('json by default when stdout is not a terminal: every log line is one JSON object', async () => {
    const { lines, requestId } = await logsOfOneRequest({ DATABASE_URL: database.url, DATA_DIR: dataDir });
    const logs = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, any>);
    const access = logs.filter((log) => log.reqId === requestId);
    assert.equal(access.length, 1, lines.join('\n'));
    assert.deepEqual(
      { ...access[0], time: 0, pid: 0, hostname: '', ms: 0 },
      {
        level: 30,
        time: 0,
        pid: 0,
        hostname: '',
        service: 'modelmarket',
        reqId: requestId,
        method: 'POST',
        path: '/graphql',
        status: 200,
        ms: 0,
        msg: 'request completed',
      },
    );
    assert.ok(logs.some((log) => log.msg === 'stopped'));
  });

  it('refuses another value at start', async () => {
    await assert.rejects(startServerProcess({ LOG_FORMAT: 'yaml', DATA_DIR: dataDir }), (error: Error) => {
      assert.match(error.message, /server exited \(2\)/);
      assert.match(error.message, /config error: LOG_FORMAT: .*json.*pretty/);
      return true;
    });
  });
});
