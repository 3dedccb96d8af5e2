// A stale postmaster.pid (the embedded PostgreSQL's lock file, left by a crash or a reboot) may name a PID that
// another process now has — another PostgreSQL even. The server stops an orphaned postmaster of its own data
// folder, but must never signal that process: it starts its PostgreSQL and leaves the other alone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { LOCATION_FILE } from '../../src/db/embedded-location.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.js';

describe('a stale postmaster.pid naming another PostgreSQL-looking process', () => {
  let home: string;
  let elsewhere: string;
  let database: EmbeddedDatabase | undefined;
  const password = randomBytes(16).toString('hex');
  const options = () => ({
    dir: path.join(home, 'postgres'),
    password,
    database: 'postgres',
    logger: pino({ level: 'silent' }),
  });
  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-stale-pid-'));
    elsewhere = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-other-postgres-'));
  });
  after(async () => {
    await database?.stop();
    await rm(home, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  });

  it('is not signalled, and the embedded PostgreSQL starts', async () => {
    const first = await startEmbeddedPostgres(options());
    await first.stop();
    // As root the data folder may be elsewhere; its location is then recorded.
    const recorded = await readFile(path.join(home, LOCATION_FILE), 'utf8').catch(() => null);
    const data = recorded?.trim() || path.join(home, 'postgres');

    // A process named postgres, as another PostgreSQL's would be, working in another folder.
    const impostor = spawn('bash', ['-c', 'exec -a postgres sleep 60'], { cwd: elsewhere, stdio: 'ignore' });
    const exited = once(impostor, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      for (const deadline = Date.now() + 5_000; ;) {
        const cmdline = await readFile(`/proc/${impostor.pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.startsWith('postgres')) break;
        assert.ok(Date.now() < deadline, 'the impostor runs as postgres');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await writeFile(path.join(data, 'postmaster.pid'), `${impostor.pid}\n${data}\n`);

      database = await startEmbeddedPostgres(options());
      const client = new pg.Client({ connectionString: database.adminUrl });
      await client.connect();
      assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
      await client.end();
    } finally {
      impostor.kill('SIGTERM');
    }
    // Had the server signalled it (SIGINT, as it stops an orphaned postmaster), it would have died of that.
    assert.deepEqual(await exited, [null, 'SIGTERM'], 'the impostor was left alone until now');
  });
});
