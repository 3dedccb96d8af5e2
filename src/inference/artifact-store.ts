import { randomUUID } from 'node:crypto';
import { access, chmod, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { InferenceArtifactError, InferenceInputError } from './errors.js';

/** A model artifact as the database stores it: model.json plus all weight bytes. */
export interface ModelArtifact {
  modelJson: unknown;
  /** The weight files named in `modelJson.weightsManifest`, concatenated in manifest order. */
  weights: Uint8Array;
}

export interface ModelRef {
  /** sha256 of the artifact (64 lowercase hex chars); one key must always name the same bytes. */
  key: string;
  load(): Promise<ModelArtifact>;
}

export const MODEL_JSON_FILE = 'model.json';
/** The cache's folders and files: its owner's only. */
const PRIVATE_DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;
/** A write in progress; renamed into place when complete, so one left at start is a killed process's. */
const TEMP_PREFIX = '.tmp-';
const MODEL_KEY_PATTERN = /^[0-9a-f]{64}$/;
// tfjs writers split a weight group into 4 MiB shards; any split reads back identically
// because loaders concatenate the shard files in manifest order.
const SHARD_BYTES = 4 * 1024 * 1024;

const BYTES_PER_VALUE: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
};
const BYTES_PER_QUANTIZED_VALUE: Record<string, number> = {
  uint8: 1,
  uint16: 2,
  float16: 2,
};

export function assertModelKey(key: string): void {
  // The key names a directory, so anything but a plain hash could escape the cache dir.
  if (!MODEL_KEY_PATTERN.test(key)) {
    throw new InferenceInputError('model key must be a sha256 as 64 lowercase hex characters');
  }
}

/**
 * Content-addressed file cache of model artifacts: `<rootDir>/<key>/model.json` plus the
 * weight files its manifest names. Workers load models from here. An entry directory only
 * ever appears complete (it is renamed into place), so its existence means it is usable.
 *
 * The cache holds at most `capacityBytes`: writing an entry evicts the least recently used
 * ones, except entries pinned by work that may still read them (see `pin`). Entries are
 * rebuilt from the database on their next use. One process owns a cache directory.
 */
export class ArtifactStore {
  /** Bytes on disk per key, least recently used first (Map order). */
  private readonly entries: Map<string, number>;
  private readonly pending = new Map<string, Promise<void>>();
  private readonly pins = new Map<string, number>();
  /** Evictions whose files are still being deleted. */
  private readonly removing = new Map<string, Promise<void>>();
  private bytes = 0;

  private constructor(
    readonly rootDir: string,
    private readonly capacityBytes: number,
    private readonly maxParameters: number,
    entries: Map<string, number>,
  ) {
    this.entries = entries;
    for (const size of entries.values()) this.bytes += size;
  }

  /** `maxParameters`: artifacts whose manifest holds more weight values are refused before anything is written. */
  static async open(rootDir: string, capacityBytes = Infinity, maxParameters = Infinity): Promise<ArtifactStore> {
    const absoluteRoot = path.resolve(rootDir);
    await mkdir(absoluteRoot, { recursive: true, mode: PRIVATE_DIR_MODE });
    // Also a folder an earlier version made world-readable. DATA_DIR itself may be traversable by all (root
    // lets the postgres user through it): the cached weights are private models' and only this user's.
    await chmod(absoluteRoot, PRIVATE_DIR_MODE);
    const found: { key: string; size: number; usedAt: number }[] = [];
    for (const entry of await readdir(absoluteRoot)) {
      const entryDir = path.join(absoluteRoot, entry);
      const { mtimeMs } = await stat(entryDir);
      if (entry.startsWith(TEMP_PREFIX)) {
        // A write the previous process did not finish (it was killed): one process owns this folder, so no
        // write of another is under way.
        await rm(entryDir, { recursive: true, force: true });
      } else if (MODEL_KEY_PATTERN.test(entry)) {
        found.push({ key: entry, size: await directoryBytes(entryDir), usedAt: mtimeMs });
      }
    }
    found.sort((a, b) => a.usedAt - b.usedAt);
    const store = new ArtifactStore(
      absoluteRoot,
      capacityBytes,
      maxParameters,
      new Map(found.map((e) => [e.key, e.size])),
    );
    await store.evict();
    return store;
  }

  /** Makes sure the model's files are on disk, calling `model.load()` at most once per key at a time. */
  ensure(model: ModelRef): Promise<void> {
    const size = this.entries.get(model.key);
    if (size !== undefined) {
      this.entries.delete(model.key); // most recently used now
      this.entries.set(model.key, size);
      // Over budget when entries that were pinned as they arrived are now free to go.
      return this.bytes > this.capacityBytes ? this.evict() : Promise.resolve();
    }
    let pending = this.pending.get(model.key);
    if (!pending) {
      pending = this.fetchAndWrite(model).finally(() => this.pending.delete(model.key));
      this.pending.set(model.key, pending);
    }
    return pending;
  }

  /** Keeps the entry from eviction until a matching `unpin`: call around every worker task that may load it. */
  pin(key: string): void {
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
  }

  unpin(key: string): void {
    const count = (this.pins.get(key) ?? 0) - 1;
    if (count > 0) this.pins.set(key, count);
    else this.pins.delete(key);
  }

  /** Entries and bytes on disk. */
  usage(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  private async fetchAndWrite(model: ModelRef): Promise<void> {
    assertModelKey(model.key);
    const entryDir = path.join(this.rootDir, model.key);
    await this.removing.get(model.key);
    if (!(await fileExists(path.join(entryDir, MODEL_JSON_FILE)))) {
      const artifact = await model.load();
      const files = layoutArtifactFiles(artifact, this.maxParameters);
      await writeDirAtomically(this.rootDir, entryDir, files);
    }
    const size = await directoryBytes(entryDir);
    this.entries.set(model.key, size);
    this.bytes += size;
    await this.evict();
  }

  /** Removes least recently used, unpinned entries until the cache fits (the newest always stays). */
  private async evict(): Promise<void> {
    const newest = [...this.entries.keys()].at(-1);
    for (const [key, size] of this.entries) {
      if (this.bytes <= this.capacityBytes) return;
      if (key === newest || this.pins.has(key)) continue;
      this.entries.delete(key);
      this.bytes -= size;
      const removal = rm(path.join(this.rootDir, key), { recursive: true, force: true });
      this.removing.set(key, removal);
      try {
        await removal;
      } finally {
        this.removing.delete(key);
      }
    }
  }
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(path.join(dir, name))).size;
  return total;
}

interface ArtifactFile {
  name: string;
  bytes: Uint8Array;
}

/** Validates an artifact and cuts its weight buffer into the files its manifest names. */
function layoutArtifactFiles(artifact: ModelArtifact, maxParameters: number): ArtifactFile[] {
  const manifest = parseModelJson(artifact.modelJson);
  const parameters = manifest
    .flatMap((group) => group.weights)
    .reduce((sum, spec) => sum + parameterCount(spec.shape), 0);
  if (parameters > maxParameters) {
    throw new InferenceArtifactError(
      `weightsManifest holds ${parameters} parameters; at most ${maxParameters} are served`,
    );
  }
  const { weights } = artifact;
  const expectedBytes = manifest.reduce((sum, group) => sum + groupByteLength(group), 0);
  if (expectedBytes !== weights.byteLength) {
    throw new InferenceArtifactError(
      `weightsManifest describes ${expectedBytes} bytes of weights but the artifact has ${weights.byteLength}`,
    );
  }
  const files: ArtifactFile[] = [
    { name: MODEL_JSON_FILE, bytes: new TextEncoder().encode(JSON.stringify(artifact.modelJson)) },
  ];
  let offset = 0;
  for (const group of manifest) {
    const groupEnd = offset + groupByteLength(group);
    group.paths.forEach((name, index) => {
      const isLastShard = index === group.paths.length - 1;
      const end = isLastShard ? groupEnd : Math.min(offset + SHARD_BYTES, groupEnd);
      files.push({ name, bytes: weights.subarray(offset, end) });
      offset = end;
    });
  }
  return files;
}

function parseModelJson(modelJson: unknown): io.WeightsManifestConfig {
  if (!isRecord(modelJson) || !isRecord(modelJson.modelTopology)) {
    throw new InferenceArtifactError(
      'model.json must be an object with a modelTopology (a tfjs layers or graph model)',
    );
  }
  const manifest = modelJson.weightsManifest;
  if (!Array.isArray(manifest)) throw new InferenceArtifactError('model.json has no weightsManifest array');
  const fileNames = new Set<string>([MODEL_JSON_FILE]);
  for (const group of manifest) {
    if (!isRecord(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new InferenceArtifactError('each weightsManifest group needs paths and weights arrays');
    }
    if (group.paths.length === 0) throw new InferenceArtifactError('a weightsManifest group has no paths');
    for (const name of group.paths) {
      // Manifest paths become file names in the cache dir: plain, unique names only.
      if (typeof name !== 'string' || !/^[\w.-]+$/.test(name) || name === '.' || name === '..' || fileNames.has(name)) {
        throw new InferenceArtifactError(`invalid or duplicate weights file name in manifest: ${String(name)}`);
      }
      fileNames.add(name);
    }
    for (const spec of group.weights) {
      if (!isRecord(spec) || typeof spec.name !== 'string' || !isShape(spec.shape) || typeof spec.dtype !== 'string') {
        throw new InferenceArtifactError('each manifest weight needs a name, a shape and a dtype');
      }
    }
  }
  return manifest as io.WeightsManifestConfig;
}

/** Bytes a manifest group's files hold in all (its weights' shapes × dtypes); throws for a dtype without a size. */
export function groupByteLength(group: io.WeightsManifestConfig[number]): number {
  return group.weights.reduce((sum, spec) => sum + weightByteLength(spec), 0);
}

function weightByteLength(spec: io.WeightsManifestEntry): number {
  const bytesPerValue = spec.quantization
    ? BYTES_PER_QUANTIZED_VALUE[spec.quantization.dtype]
    : BYTES_PER_VALUE[spec.dtype];
  if (bytesPerValue === undefined) {
    // String weights (graph models' string constants) have no static size; served inputs are numbers.
    throw new InferenceArtifactError(
      `weight ${spec.name} has unsupported dtype ${spec.quantization?.dtype ?? spec.dtype}`,
    );
  }
  return parameterCount(spec.shape) * bytesPerValue;
}

/** Values in a weight of this shape. */
export function parameterCount(shape: readonly number[]): number {
  return shape.reduce((size, dim) => size * dim, 1);
}

async function writeDirAtomically(rootDir: string, finalDir: string, files: ArtifactFile[]): Promise<void> {
  const tempDir = path.join(rootDir, `${TEMP_PREFIX}${path.basename(finalDir)}-${randomUUID()}`);
  await mkdir(tempDir, { mode: PRIVATE_DIR_MODE });
  try {
    for (const file of files) {
      const handle = await open(path.join(tempDir, file.name), 'wx', PRIVATE_FILE_MODE);
      try {
        await handle.writeFile(file.bytes);
        // Flush before the rename so a crash cannot leave a complete-looking entry with torn files.
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    await rename(tempDir, finalDir);
  } catch (error) {
    await rm(tempDir, { recursive: true, force: true });
    // Another process finished the same content-addressed entry first: theirs is identical.
    if (isErrnoException(error) && (error.code === 'ENOTEMPTY' || error.code === 'EEXIST')) return;
    throw error;
  }
}

async function fileExists(filePath: string): Promise<boolean> {
  try {
    await access(filePath);
    return true;
  } catch {
    return false;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((dim) => Number.isSafeInteger(dim) && dim >= 0);
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && 'code' in error;
}
