// A stop never hangs on its database: with the embedded PostgreSQL frozen (its processes SIGSTOPped) and a call
// stuck on it, SIGTERM still ends the server through its own bounded steps — each step over its budget logged
// and forced, the postmaster killed — before main.ts's last-resort force-exit, and says it stopped uncleanly.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { STOP_BUDGET_AFTER_GRACE_MS } from '../../src/app.js';
import { SIGN_UP } from '../support/fixtures.js';
import { isRunning, signalEach, signalTree } from '../support/process-tree.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const GRACE_MS = 200;

describe('a graceful stop with a frozen embedded database', () => {
  let dataDir: string;
  let server: ServerProcess;
  let frozen: number[] = [];
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-frozen-stop-'));
    server = await startServerProcess({
      DATA_DIR: dataDir,
      DATABASE_URL: '',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      PASSWORD_SCRYPT_LOG2N: '12',
      INFERENCE_WORKERS: '1',
      LOG_LEVEL: 'info',
    });
  });
  after(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    // Backends left by a killed postmaster exit once resumed; any still there after a while are killed.
    signalEach(frozen, 'SIGCONT');
    for (const deadline = Date.now() + 5_000; frozen.some(isRunning) && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    signalEach(frozen.filter(isRunning), 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('exits through its bounded steps, logging each one it forced, and kills the postmaster', async () => {
    let output = '';
    for (const stream of [server.child.stdout!, server.child.stderr!]) stream.on('data', (chunk) => (output += chunk));
    const signedUp = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: SIGN_UP,
        variables: {
          input: {
            email: 'frozen@example.com',
            password: 'a frozen stop passphrase',
            displayName: 'F',
            role: 'CONSUMER',
          },
        },
      }),
    });
    const token = ((await signedUp.json()) as { data: { signUp: { accessToken: string } } }).data.signUp.accessToken;

    const pidFile = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
    const postmaster = Number(pidFile.split('\n', 1)[0]);
    frozen = signalTree(postmaster, 'SIGSTOP');
    // A call stuck on the frozen database (its statement timeout is a minute): the stop must give up on it too.
    const stuck = fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ me { id } }' }),
    }).then(
      (response) => response.status,
      () => 'no answer',
    );
    await new Promise((resolve) => setTimeout(resolve, 200));

    const exited = once(server.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    server.child.kill('SIGTERM');
    // Past the last-resort force-exit (which exits 1 too, logging 'graceful shutdown timed out'), it hangs.
    const hung = new Promise<'hung'>((resolve) =>
      setTimeout(resolve, GRACE_MS + STOP_BUDGET_AFTER_GRACE_MS + 5_000, 'hung').unref(),
    );
    const outcome = await Promise.race([exited, hung]);
    assert.notEqual(outcome, 'hung', `the server exited:\n${output}`);
    assert.deepEqual(outcome, [1, null], `an unclean stop exits 1:\n${output}`);
    assert.doesNotMatch(output, /graceful shutdown timed out/, 'the stop ended by its own bounds');
    assert.match(output, /a stop step did not finish within its budget; forcing it/);
    assert.match(output, /closing the database pool/);
    assert.match(output, /the embedded PostgreSQL did not stop; forcing it/);
    assert.match(output, /error during shutdown/);
    assert.equal(isRunning(postmaster), false, 'the frozen postmaster was killed');
    assert.notEqual(await stuck, 200, 'the stuck call was not answered as a success');
  });
});
