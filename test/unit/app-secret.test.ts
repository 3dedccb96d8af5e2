// The generated APP_SECRET kept in DATA_DIR (which root lets every user traverse, for the embedded
// PostgreSQL) is readable by its owner only, also when an existing file was made readable by others.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveAppSecret } from '../../src/security/secret-box.js';

describe('the app secret file', () => {
  let dataDir: string;
  const mode = async (file: string) => (await stat(file)).mode & 0o777;
  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-secret-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  it('is made 0600, and the same secret is read back', async () => {
    const secret = await resolveAppSecret(undefined, dataDir);
    const file = path.join(dataDir, 'app-secret');
    assert.equal(await mode(file), 0o600);
    assert.equal(await resolveAppSecret(undefined, dataDir), secret);
  });

  it('is closed to others again when it was readable by them', async () => {
    const file = path.join(dataDir, 'app-secret');
    await writeFile(file, 'an existing secret of enough length to be used\n', { mode: 0o644 });
    await chmod(file, 0o644);
    assert.equal(await resolveAppSecret(undefined, dataDir), 'an existing secret of enough length to be used');
    assert.equal(await mode(file), 0o600);
    assert.equal((await readFile(file, 'utf8')).trim(), 'an existing secret of enough length to be used');
  });
});
