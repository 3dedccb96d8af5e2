// The artifact file cache's disk budget: least recently used entries go, pinned ones stay, all come back. Its
// folders and files are its owner's only: they hold private models' weights.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ArtifactStore } from '../../src/inference/artifact-store.js';
import { buildMlp, modelRef, toArtifact } from './models.js';

describe('ArtifactStore on disk', () => {
  let dir: string;
  let refs: ReturnType<typeof modelRef>[];
  let entryBytes: number;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mm-artifact-store-'));
    // Four models of the same architecture: the same size on disk.
    refs = await Promise.all([1, 2, 3, 4].map(async (seed) => modelRef(await toArtifact(buildMlp([64, 16, 4], seed)))));
    const probe = await ArtifactStore.open(path.join(dir, 'probe'));
    await probe.ensure(refs[0]!);
    entryBytes = probe.usage().bytes;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const onDisk = async (root: string) => (await readdir(root)).sort();

  test('evicts the least recently used entries beyond the budget, and rebuilds them when used again', async () => {
    const root = path.join(dir, 'lru');
    const store = await ArtifactStore.open(root, 2 * entryBytes);
    const [a, b, c] = refs as [ReturnType<typeof modelRef>, ReturnType<typeof modelRef>, ReturnType<typeof modelRef>];
    const loadsBefore = a.loads;
    await store.ensure(a);
    await store.ensure(b);
    await store.ensure(a); // a is now more recent than b
    await store.ensure(c);
    assert.deepEqual(await onDisk(root), [a.key, c.key].sort());
    assert.deepEqual(store.usage(), { entries: 2, bytes: 2 * entryBytes });
    await store.ensure(b);
    assert.deepEqual(await onDisk(root), [b.key, c.key].sort());
    assert.equal(a.loads, loadsBefore + 1, 'a was read from the database once, then served from disk');
  });

  test('never evicts a pinned entry, even over budget', async () => {
    const root = path.join(dir, 'pinned');
    const store = await ArtifactStore.open(root, entryBytes);
    const [a, b, c] = refs as [ReturnType<typeof modelRef>, ReturnType<typeof modelRef>, ReturnType<typeof modelRef>];
    store.pin(a.key);
    await store.ensure(a);
    await store.ensure(b);
    assert.deepEqual(await onDisk(root), [a.key, b.key].sort());
    store.unpin(a.key);
    await store.ensure(c);
    assert.deepEqual(await onDisk(root), [c.key]);
  });

  test('applies the budget to what an earlier run left on disk', async () => {
    const root = path.join(dir, 'reopened');
    const unbounded = await ArtifactStore.open(root);
    for (const ref of refs) await unbounded.ensure(ref);
    assert.equal((await onDisk(root)).length, 4);
    const bounded = await ArtifactStore.open(root, 3 * entryBytes);
    assert.equal(bounded.usage().entries, 3);
    assert.equal((await onDisk(root)).length, 3);
  });

  test('removes the partial writes a killed process left, at once, keeping complete entries', async () => {
    const root = path.join(dir, 'partial');
    const store = await ArtifactStore.open(root);
    await store.ensure(refs[0]!);
    // What a write cut short looks like: a temp folder with part of an entry (it was never renamed into place).
    const partial = path.join(root, `.tmp-${refs[1]!.key}-0f8fad5b-d9cb-469f-a165-70867728950e`);
    await mkdir(partial);
    await writeFile(path.join(partial, 'model.json'), '{"modelTopo');
    await ArtifactStore.open(root);
    assert.deepEqual(await onDisk(root), [refs[0]!.key]);
  });

  test("keeps the cached weights its owner's only, also in a folder an earlier version made world-readable", async () => {
    const root = path.join(dir, 'private');
    await mkdir(root, { mode: 0o755 });
    await chmod(root, 0o755);
    const store = await ArtifactStore.open(root);
    await store.ensure(refs[0]!);
    const mode = async (file: string) => (await stat(file)).mode & 0o777;
    assert.equal(await mode(root), 0o700, 'the cache folder');
    const entry = path.join(root, refs[0]!.key);
    assert.equal(await mode(entry), 0o700, 'an entry folder');
    const files = await readdir(entry);
    assert.ok(files.length >= 2, 'model.json and its weights');
    for (const file of files) assert.equal(await mode(path.join(entry, file)), 0o600, file);
  });
});
