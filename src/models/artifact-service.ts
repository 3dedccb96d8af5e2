// Artifacts: what `model.save(tf.io.http(url))` uploads, or a graph model's model.json and shards as
// `tensorflowjs_converter` wrote them, validated completely (structure, manifest against the bytes, and an
// actual load in tfjs) before anything is stored.
import { createHash } from 'node:crypto';
import type { Actor } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Prisma } from '../db/database.js';
import type { Artifact } from '../generated/prisma/client.js';
import {
  InferenceClosedError,
  InferenceOverloadedError,
  type InferenceEngine,
  type ModelRef,
  type ModelSignature,
} from '../inference/engine.js';
import { groupByteLength } from '../inference/artifact-store.js';
import { NotFoundError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { BLOB_TRANSACTION, type ArtifactStorage, type BlobWriter, type StoredArtifact } from './artifact-storage.js';
import { isAdmin } from './model-policy.js';

/**
 * A model's topology, not its weights: large Keras topologies and converted graphs take a few hundred KB.
 * Parsing it is main-thread work (at upload, publish and cache rebuilds), so it is bounded like any other input.
 */
const MAX_MODEL_JSON_BYTES = 2 * 1024 * 1024;

/** The single weights file name of a stored artifact (the name `tf.io.http` uploads under). */
export const WEIGHTS_FILE = 'model.weights.bin';

/** An artifact problem the uploader can fix; the HTTP layer answers 4xx with this message. */
export class InvalidArtifactError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 413 | 422 = 400,
  ) {
    super(message);
  }
}

/**
 * An upload whose parts do not make an artifact (no usable model.json, a weights file missing or extra): the
 * uploader most likely named a part wrongly, so the HTTP layer adds the parts it received to the message.
 */
export class ArtifactPartsError extends InvalidArtifactError {}

/** What a part should hold, said once for every refusal of the model.json part. */
export const MODEL_JSON_EXPECTED =
  "expected a part named model.json holding the model's JSON (with modelTopology and weightsManifest)";

export interface UploadedFiles {
  modelJson: Buffer;
  /** Weight files by name, as uploaded. */
  weights: Map<string, Buffer>;
}

interface ManifestGroup {
  paths: string[];
  weights: unknown[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const baseName = (path: string) => path.replace(/^\.\//, '').split('/').at(-1) ?? path;

/**
 * Puts an upload in canonical form: one manifest group whose single file is `model.weights.bin` holding every
 * weight in manifest order. Then the stored bytes, their hash and what downloads serve are all one thing.
 */
export function canonicalise(files: UploadedFiles): {
  modelJson: Buffer;
  weights: Buffer;
  parsed: Record<string, unknown>;
} {
  if (files.modelJson.byteLength > MAX_MODEL_JSON_BYTES) {
    throw new InvalidArtifactError(
      `model.json is ${files.modelJson.byteLength} bytes; at most ${MAX_MODEL_JSON_BYTES} are accepted (weights belong in the weights files)`,
      413,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(files.modelJson.toString('utf8'));
  } catch {
    throw new ArtifactPartsError(`model.json is not valid JSON: ${MODEL_JSON_EXPECTED}`);
  }
  if (!isRecord(parsed) || !isRecord(parsed.modelTopology)) {
    throw new ArtifactPartsError(
      `model.json must be a TensorFlow.js layers model or graph model (an object with modelTopology): ${MODEL_JSON_EXPECTED}`,
    );
  }
  if (parsed.format !== undefined && parsed.format !== 'layers-model' && parsed.format !== 'graph-model') {
    throw new InvalidArtifactError(
      `model.json format "${String(parsed.format)}" is not supported; upload a layers-model or a graph-model`,
    );
  }
  if (parsed.format === 'graph-model' && !Array.isArray(parsed.modelTopology.node)) {
    throw new InvalidArtifactError('a graph-model needs modelTopology.node (the converted GraphDef)');
  }
  const manifest = parsed.weightsManifest;
  if (!Array.isArray(manifest) || manifest.length === 0)
    throw new InvalidArtifactError('model.json has no weightsManifest');
  const groups = manifest as ManifestGroup[];
  if (!groups.every((g) => isRecord(g) && Array.isArray(g.paths) && Array.isArray(g.weights))) {
    throw new InvalidArtifactError('each weightsManifest entry needs paths and weights arrays');
  }
  const named = groups.flatMap((g) => g.paths.map((p) => baseName(String(p))));
  // Each file is joined once per mention: a repeated name would multiply a small upload in memory.
  const seen = new Set<string>();
  for (const name of named) {
    if (seen.has(name)) throw new InvalidArtifactError(`weightsManifest names ${name} more than once`);
    seen.add(name);
  }
  const missing = named.filter((name) => !files.weights.has(name));
  if (missing.length) {
    throw new ArtifactPartsError(
      `weights file(s) missing from the upload: ${missing.join(', ')}; model.json's weightsManifest names ${expectedFiles(groups)}`,
    );
  }
  const extra = [...files.weights.keys()].filter((name) => !seen.has(name));
  if (extra.length) {
    throw new ArtifactPartsError(
      `unexpected part(s) not named in weightsManifest: ${extra.join(', ')}; model.json's weightsManifest names ${expectedFiles(groups)}`,
    );
  }
  const canonical = {
    ...parsed,
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: groups.flatMap((g) => g.weights) }],
  };
  return {
    modelJson: Buffer.from(JSON.stringify(canonical)),
    weights: Buffer.concat(named.map((name) => files.weights.get(name)!)),
    parsed: canonical,
  };
}

/** A size as people read it in an error message: `812 bytes`, `12 KB`, `3.2 MB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The files a manifest names with the bytes they should hold, e.g. `group1-shard1of1.bin (expected 3.2 MB)`. */
function expectedFiles(groups: ManifestGroup[]): string {
  return groups
    .map((group) => {
      const names = group.paths.map((p) => baseName(String(p))).join(', ');
      let bytes: number;
      try {
        bytes = groupByteLength(group as Parameters<typeof groupByteLength>[0]);
      } catch {
        // A malformed entry or a dtype without a size: the load reports it; here only the names matter.
        return names;
      }
      return `${names} (${group.paths.length > 1 ? `${formatBytes(bytes)} in all` : `expected ${formatBytes(bytes)}`})`;
    })
    .join(', ');
}

export function artifactHash(artifact: StoredArtifact): string {
  return createHash('sha256').update(artifact.modelJson).update(artifact.weights).digest('hex');
}

export class ArtifactService {
  readonly #refs = new Map<string, ModelRef>();

  constructor(
    private readonly prisma: Prisma,
    private readonly storage: ArtifactStorage,
    private readonly engine: InferenceEngine,
    private readonly audit: AuditService,
  ) {}

  /** Validates, loads in tfjs, then stores. Throws InvalidArtifactError for anything the uploader must fix. */
  async upload(actor: Actor, files: UploadedFiles): Promise<{ id: string; sha256: string; sizeBytes: number }> {
    const uploadedById = requireUserId(actor.principal);
    const { modelJson, weights, parsed } = canonicalise(files);
    const sha256 = artifactHash({ modelJson, weights });
    try {
      await this.engine.inspect({ key: sha256, load: async () => ({ modelJson: parsed, weights }) });
    } catch (error) {
      // tfjs's own load failures arrive as plain Errors from the worker; only capacity problems are ours.
      if (error instanceof InferenceOverloadedError || error instanceof InferenceClosedError) throw error;
      throw new InvalidArtifactError(`The model does not load in TensorFlow.js: ${(error as Error).message}`, 422);
    }
    const sizeBytes = modelJson.byteLength + weights.byteLength;
    const artifact = await this.prisma.$transaction(async (tx) => {
      await this.storage.put(sha256, { modelJson, weights }, tx);
      const created = await tx.artifact.create({ data: { sha256, sizeBytes, uploadedById } });
      await this.audit.record(
        actor,
        {
          action: AuditAction.ARTIFACT_UPLOADED,
          targetType: 'Artifact',
          targetId: created.id,
          details: { sha256, sizeBytes },
        },
        tx,
      );
      return created;
    }, BLOB_TRANSACTION);
    return { id: artifact.id, sha256, sizeBytes };
  }

  /** An artifact the caller uploaded (admins: any), for publishing. */
  async findUsable(actor: Actor, artifactId: string): Promise<Artifact> {
    const userId = requireUserId(actor.principal);
    assertUuid(artifactId, 'input.artifactId');
    const artifact = await this.prisma.artifact.findUnique({ where: { id: artifactId } });
    if (!artifact || (artifact.uploadedById !== userId && !isAdmin(actor.principal)))
      throw new NotFoundError('Artifact');
    return artifact;
  }

  async sha256Of(artifactId: string): Promise<string> {
    const artifact = await this.prisma.artifact.findUniqueOrThrow({
      where: { id: artifactId },
      select: { sha256: true },
    });
    return artifact.sha256;
  }

  /** A handle the inference engine loads the artifact through (read from storage on a cache miss). */
  modelRef(sha256: string): ModelRef {
    let ref = this.#refs.get(sha256);
    if (!ref) {
      ref = {
        key: sha256,
        load: async () => {
          const stored = await this.read(sha256);
          return { modelJson: JSON.parse(stored.modelJson.toString('utf8')) as unknown, weights: stored.weights };
        },
      };
      this.#refs.set(sha256, ref);
    }
    return ref;
  }

  inspect(sha256: string): Promise<ModelSignature> {
    return this.engine.inspect(this.modelRef(sha256));
  }

  warm(sha256: string): Promise<void> {
    return this.engine.warm(this.modelRef(sha256));
  }

  /**
   * Stores derived bytes (src/models/variants.ts) under their hash, in the transaction `tx` that records what
   * they are, so a failed commit leaves no orphan blob; storing the same bytes again is a no-op.
   */
  store(sha256: string, artifact: StoredArtifact, tx: BlobWriter): Promise<void> {
    return this.storage.put(sha256, artifact, tx);
  }

  async read(sha256: string): Promise<StoredArtifact> {
    const stored = await this.storage.get(sha256);
    if (!stored) throw new Error(`artifact blob ${sha256} is missing from storage`);
    return stored;
  }
}
