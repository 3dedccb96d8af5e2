// Content-addressed artifact bytes. PostgreSQL by default; the interface is what an S3-compatible store
// would implement (roadmap: scale-out).
import type { Prisma } from '../db/database.js';

export interface StoredArtifact {
  /** model.json exactly as stored (canonical form, see artifact-service.ts). */
  modelJson: Buffer;
  /** All weights, concatenated in manifest order. */
  weights: Buffer;
}

/**
 * Transactions that write blobs (megabytes of bytea, a calibration of inputs² floats): Prisma's default 5 s
 * was seen to expire on a loaded machine, failing an upload or a publish whose marking had been paid for.
 */
export const BLOB_TRANSACTION = { maxWait: 10_000, timeout: 60_000 };

/** A transaction the bytes are written in: rolled back, it leaves no blob behind. */
export type BlobWriter = Pick<Prisma, 'artifactBlob'>;

export interface ArtifactStorage {
  /**
   * Stores the bytes under their sha256, in the transaction `tx` that records them; storing the same bytes again
   * is a no-op. (A store that cannot join the transaction must remove what it wrote when it fails.)
   */
  put(sha256: string, artifact: StoredArtifact, tx: BlobWriter): Promise<void>;
  get(sha256: string): Promise<StoredArtifact | null>;
}

export class PostgresArtifactStorage implements ArtifactStorage {
  constructor(private readonly prisma: Prisma) {}

  async put(sha256: string, artifact: StoredArtifact, tx: BlobWriter): Promise<void> {
    await tx.artifactBlob.createMany({
      data: [
        {
          sha256,
          modelJson: new Uint8Array(artifact.modelJson),
          weights: new Uint8Array(artifact.weights),
          sizeBytes: artifact.modelJson.byteLength + artifact.weights.byteLength,
        },
      ],
      skipDuplicates: true,
    });
  }

  async get(sha256: string): Promise<StoredArtifact | null> {
    const blob = await this.prisma.artifactBlob.findUnique({
      where: { sha256 },
      select: { modelJson: true, weights: true },
    });
    return blob ? { modelJson: Buffer.from(blob.modelJson), weights: Buffer.from(blob.weights) } : null;
  }
}
