// The README's front door: `npm start` with nothing configured runs on an embedded PostgreSQL, keeps its
// data across restarts, drains in-flight requests on SIGTERM, and refuses bad configuration clearly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { LOG_IN, SIGN_UP } from './support/fixtures.js';
import { startServerProcess, stopServerProcess } from './support/server-process.js';

async function gql(url: string, query: string, variables: Record<string, unknown>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** An operator script (`npm run keys`, `npm run admin:create`) on the embedded database: exit code and stderr. */
async function runScript(script: string, args: string[], dataDir: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, DATABASE_URL: '', DATA_DIR: dataDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

describe('npm start (src/main.ts) on an embedded database', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-frontdoor-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  const account = { email: 'newcomer@example.com', password: 'my first passphrase' };

  it('starts with no configuration, serves, and finishes an in-flight request on SIGTERM', async () => {
    const { child, url } = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    const ready = await fetch(url.replace('/graphql', '/readyz'));
    assert.equal(ready.status, 200);
    // Sign-up hashes at the full OWASP cost, long enough to be in flight when the signal lands.
    const inFlight = gql(url, SIGN_UP, { input: { ...account, displayName: 'New', role: 'CONSUMER' } });
    await new Promise((r) => setTimeout(r, 50));
    const exited = stopServerProcess(child);
    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(res.body.data.signUp.user.email, account.email);
    assert.equal(await exited, 0);
  });

  it('keeps its data across a restart', async () => {
    const { child, url } = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    try {
      const res = await gql(url, LOG_IN, account);
      assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
      assert.equal(res.body.data.logIn.user.email, account.email);
    } finally {
      assert.equal(await stopServerProcess(child, 'SIGINT'), 0);
    }
  });

  it('refuses a second live server and the operator scripts on the same DATA_DIR with one sentence, leaving the first serving', async () => {
    const first = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    try {
      const folder = dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const sentence = `another Modelmarket server \\(PID ${first.child.pid}\\) is using DATA_DIR ${folder}; [^\\n]+`;
      const [keys, adminCreate] = await Promise.all([
        runScript('scripts/keys.ts', ['list'], dataDir),
        runScript('scripts/admin-create.ts', ['--email', 'ops@example.com', '--password', 'a passphrase'], dataDir),
      ]);
      assert.deepEqual([keys.code, adminCreate.code], [1, 1]);
      assert.match(keys.stderr, new RegExp(`^keys: ${sentence}\\n$`));
      assert.match(adminCreate.stderr, new RegExp(`^admin:create failed: ${sentence}\\n$`));
      await assert.rejects(startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' }), (error: Error) => {
        assert.match(error.message, /server exited \(1\)/);
        assert.match(
          error.message,
          new RegExp(`another Modelmarket server \\(PID ${first.child.pid}\\) is using DATA_DIR`),
        );
        assert.doesNotMatch(error.message, /undefined/);
        return true;
      });
      const res = await gql(first.url, LOG_IN, account);
      assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    } finally {
      assert.equal(await stopServerProcess(first.child), 0);
    }
  });

  it('starts cleanly after only the node process was SIGKILLed, stopping the PostgreSQL it left running', async () => {
    const killed = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    await stopServerProcess(killed.child, 'SIGKILL');
    const { child, url } = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' });
    try {
      const res = await gql(url, LOG_IN, account);
      assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    } finally {
      assert.equal(await stopServerProcess(child), 0);
    }
  });

  it('refuses a bad configuration with one clear line per variable', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, PORT: 'not-a-port', MODE: 'prod', DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2);
    assert.match(stderr, /^config error: PORT: .+$/m);
    assert.match(stderr, /^config error: MODE: .+$/m);
  });
});
