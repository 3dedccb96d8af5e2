// The CLI's credentials file (src/cli/credentials.ts): written afresh for its owner alone, never through a link
// at its temporary path, and its lock taken over from a dead process by one run at a time.
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { CredentialStore } from '../../src/cli/credentials.js';

const session = { accessToken: 'access', refreshToken: 'refresh', expiresAt: 1, email: 'a@example.com' };

describe('CLI credentials file', () => {
  it('writes the tokens to a new owner-only file, never through a file or link left at its temporary path', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-credentials-'));
    const file = path.join(dir, 'credentials.json');
    const store = new CredentialStore(file);
    const temporary = `${file}.${process.pid}.tmp`;

    // A leftover temporary file readable by all: the tokens never go into it with that mode.
    await writeFile(temporary, 'left over', { mode: 0o644 });
    await store.save('http://a', session);
    assert.equal((await lstat(file)).mode & 0o777, 0o600);
    assert.deepEqual((await store.read()).sessions['http://a'], session);

    // A link at the temporary path: its target is left alone, and the credentials file stays a plain file.
    const victim = path.join(dir, 'victim');
    await writeFile(victim, 'untouched', { mode: 0o644 });
    await symlink(victim, temporary);
    await store.save('http://b', { ...session, accessToken: 'other' });
    assert.equal(await readFile(victim, 'utf8'), 'untouched');
    assert.equal((await lstat(victim)).mode & 0o777, 0o644);
    const written = await lstat(file);
    assert.ok(written.isFile() && !written.isSymbolicLink());
    assert.equal(written.mode & 0o777, 0o600);
    assert.deepEqual(Object.keys((await store.read()).sessions).sort(), ['http://a', 'http://b']);
  });

  it('lets one run at a time take over a lock left by a dead process', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-lock-'));
    const file = path.join(dir, 'credentials.json');
    const lock = `${file}.lock`;
    const long = new Date(Date.now() - 10 * 60_000);
    let inside = 0;
    let most = 0;
    let done = 0;
    // Rounds of runs (separate stores, as separate processes would be) that all find the dead lock together.
    for (let round = 0; round < 20; round += 1) {
      await writeFile(lock, '');
      await utimes(lock, long, long);
      await Promise.all(
        Array.from({ length: 4 }, () =>
          new CredentialStore(file).withLock(async () => {
            inside += 1;
            most = Math.max(most, inside);
            // Holds the lock across a few turns of the event loop and a file operation, as a refresh would.
            for (let i = 0; i < 5; i += 1) await turn();
            await lstat(lock);
            inside -= 1;
            done += 1;
          }),
        ),
      );
    }
    assert.equal(done, 80);
    assert.equal(most, 1, 'two runs held the lock at once');
    await assert.rejects(lstat(lock), { code: 'ENOENT' });
  });
});
