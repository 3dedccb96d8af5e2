// Derived artifacts of a version (table artifact_variants): the owner-marked weights, licensee copies, and an
// optimised version's quantised or pruned weights. Every reader and writer of them goes through here: which
// bytes a version serves, a contract's copy, the variants an owner sees, and writing variants with their blobs
// in the transaction that records them.
import type { Principal } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { ArtifactVariant, Contract, Prisma as P, VariantKind } from '../generated/prisma/client.js';
import { artifactHash, type ArtifactService } from './artifact-service.js';
import { BLOB_TRANSACTION, type StoredArtifact } from './artifact-storage.js';
import { canManage, isAdmin, type ModelAccess } from './model-policy.js';

export type { VariantKind } from '../generated/prisma/client.js';

/** A transaction that variants and their blobs are written in. */
export type VariantWriter = Pick<Prisma, 'artifactVariant' | 'artifactBlob'>;

/** A variant as it is read: the calibration bytes (megabytes) only where asked for. */
export type VariantRow = Omit<ArtifactVariant, 'calibration'>;
const WITHOUT_CALIBRATION = { calibration: false } as const;

/** A variant derived at publish time (or by an optimisation), ready to commit with its version. */
export interface DerivedVariant {
  kind: Exclude<VariantKind, 'LICENSEE_COPY'>;
  /** What it was derived with (key, layout, dtype, sparsity…). */
  params: P.InputJsonObject;
  /** The derived bytes; null where the derivation produced none (an owner who opted out of marking). */
  artifact: StoredArtifact | null;
  /** Their hash when a worker computed it already (hashing megabytes holds the event loop). */
  sha256?: string;
  /** What it cost (measurements). */
  report: P.InputJsonObject;
  /** Whether predict serves these bytes and owners download them: at most one variant of a version. */
  served: boolean;
  /** Side data too large for `params` (a shaped mark's statistics). */
  calibration?: Uint8Array<ArrayBuffer>;
}

export class VariantStore {
  constructor(
    private readonly prisma: Prisma,
    private readonly artifacts: ArtifactService,
  ) {}

  /**
   * Writes a new version's variants, their blobs first, in `tx`: the version's own transaction. Returns the
   * served variant's hash, or null when the version serves its upload.
   */
  async create(tx: VariantWriter, versionId: string, variants: readonly DerivedVariant[]): Promise<string | null> {
    if (variants.filter((v) => v.served).length > 1) throw new Error('a version serves at most one variant');
    let served: string | null = null;
    for (const variant of variants) {
      const sha256 = variant.artifact ? (variant.sha256 ?? artifactHash(variant.artifact)) : null;
      if (variant.served && !sha256) throw new Error(`a served ${variant.kind} variant needs bytes`);
      if (variant.artifact) await this.artifacts.store(sha256!, variant.artifact, tx);
      await tx.artifactVariant.create({
        data: {
          versionId,
          kind: variant.kind,
          params: variant.params,
          sha256,
          served: variant.served,
          report: variant.report,
          calibration: variant.calibration,
        },
        select: { id: true },
      });
      if (variant.served) served = sha256;
    }
    return served;
  }

  /** The bytes predict serves for the version: its served variant's, else its upload's. */
  async servedSha256(version: { id: string; artifactId: string }): Promise<string> {
    const served = await this.prisma.artifactVariant.findFirst({
      where: { versionId: version.id, served: true },
      select: { sha256: true },
    });
    return served?.sha256 ?? (await this.artifacts.sha256Of(version.artifactId));
  }

  /** A version's variant of one kind (not LICENSEE_COPY: there is one per contract), or null. */
  find(versionId: string, kind: Exclude<VariantKind, 'LICENSEE_COPY'>): Promise<VariantRow | null> {
    return this.prisma.artifactVariant.findFirst({ where: { versionId, kind }, omit: WITHOUT_CALIBRATION });
  }

  /** An optimised version's QUANTIZED or PRUNED variant (its params and measured report), or null. */
  optimized(versionId: string): Promise<VariantRow | null> {
    return this.prisma.artifactVariant.findFirst({
      where: { versionId, kind: { in: ['QUANTIZED', 'PRUNED'] } },
      omit: WITHOUT_CALIBRATION,
    });
  }

  /** The variants of one kind of several versions (for a page of versions), by version id. */
  async findMany(
    versionIds: readonly string[],
    kind: Exclude<VariantKind, 'LICENSEE_COPY'>,
  ): Promise<Map<string, VariantRow>> {
    const rows = await this.prisma.artifactVariant.findMany({
      where: { versionId: { in: [...versionIds] }, kind },
      omit: WITHOUT_CALIBRATION,
    });
    return new Map(rows.map((row) => [row.versionId, row]));
  }

  /**
   * The variants of a version `principal` may see, oldest first: admins all; the model's owner all but
   * licensee copies (each belongs to its contract); nobody else any.
   */
  visible(principal: Principal, model: ModelAccess, versionId: string): Promise<VariantRow[]> {
    if (!canManage(principal, model)) return Promise.resolve([]);
    return this.prisma.artifactVariant.findMany({
      where: { versionId, ...(isAdmin(principal) ? {} : { kind: { not: 'LICENSEE_COPY' } }) },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      omit: WITHOUT_CALIBRATION,
    });
  }

  /** A variant's calibration bytes, if it has any. */
  async calibration(variantId: string): Promise<Uint8Array | null> {
    const row = await this.prisma.artifactVariant.findUnique({
      where: { id: variantId },
      select: { calibration: true },
    });
    return row?.calibration ?? null;
  }

  /** A contract's copy of a version, or null before its first licensed download. */
  licenseeCopy(contractId: string, versionId: string): Promise<VariantRow | null> {
    return this.prisma.artifactVariant.findUnique({
      where: { versionId_contractId: { versionId, contractId } },
      omit: WITHOUT_CALIBRATION,
    });
  }

  /**
   * Keeps a contract's copy: blob and row in one transaction. Two first downloads at once both build it; a
   * copy is a function of the served weights, the contract's key and the version's layout, so both built the
   * same bytes and the second insert changes nothing.
   */
  async saveLicenseeCopy(
    contractId: string,
    versionId: string,
    artifact: StoredArtifact,
    params: P.InputJsonObject,
  ): Promise<string> {
    const sha256 = artifactHash(artifact);
    await this.prisma.$transaction(async (tx) => {
      await this.artifacts.store(sha256, artifact, tx);
      await tx.artifactVariant.createMany({
        data: [{ versionId, kind: 'LICENSEE_COPY', contractId, params, sha256 }],
        skipDuplicates: true,
      });
    }, BLOB_TRANSACTION);
    return sha256;
  }

  /**
   * Owner-marked variants whose report says `path` equals `value` (verification finds versions by the size
   * of their marked tensor), with their version; only versions of `ownerId`'s models unless null (admins).
   */
  ownerMarksWhere(path: string, value: number, ownerId: string | null) {
    return this.prisma.artifactVariant.findMany({
      where: {
        kind: 'OWNER_MARKED',
        sha256: { not: null },
        report: { path: [path], equals: value },
        ...(ownerId ? { version: { model: { ownerId } } } : {}),
      },
      omit: WITHOUT_CALIBRATION,
      include: {
        version: {
          include: {
            model: { select: { slug: true, ownerId: true, visibility: true } },
            artifact: { select: { sha256: true } },
          },
        },
      },
    });
  }

  /**
   * The owner mark a version carries: the OWNER_MARKED variant of the first version of its lineage (an optimised
   * version carries its parent's mark, keyed to that first version) and that version's id; `mark` is null when
   * the lineage was published unmarked.
   */
  async ownerMarkOf(version: { id: string; derivedFromId: string | null }) {
    let markedVersionId = version.id;
    for (let parent = version.derivedFromId; parent !== null;) {
      markedVersionId = parent;
      parent = (
        await this.prisma.modelVersion.findUniqueOrThrow({
          where: { id: parent },
          select: { derivedFromId: true },
        })
      ).derivedFromId;
    }
    const mark = await this.find(markedVersionId, 'OWNER_MARKED');
    return { markedVersionId, mark: mark?.sha256 ? mark : null };
  }

  /** The contracts licensee copies were made for, by id. */
  async licenseeContracts(contractIds: readonly string[]): Promise<Map<string, Contract>> {
    if (contractIds.length === 0) return new Map();
    const contracts = await this.prisma.contract.findMany({ where: { id: { in: [...contractIds] } } });
    return new Map(contracts.map((contract) => [contract.id, contract]));
  }

  /**
   * The contracts holding a licensee copy of these marked versions or of any version derived from them, each
   * contract once per marked version (a contract's mark is one key, whichever version it downloaded), oldest first.
   */
  licenseeKeysOf(markedVersionIds: readonly string[]): Promise<{ markedVersionId: string; contractId: string }[]> {
    return this.prisma.$queryRaw<{ markedVersionId: string; contractId: string }[]>`
      WITH RECURSIVE lineage (id, root) AS (
        SELECT id, id FROM model_versions WHERE id = ANY(${[...markedVersionIds]}::uuid[])
        UNION ALL
        SELECT v.id, l.root FROM model_versions v JOIN lineage l ON v.derived_from_id = l.id
      )
      SELECT l.root::text AS "markedVersionId", a.contract_id::text AS "contractId"
      FROM artifact_variants a JOIN lineage l ON a.version_id = l.id
      WHERE a.kind = 'LICENSEE_COPY'
      GROUP BY l.root, a.contract_id
      ORDER BY min(a.created_at), a.contract_id`;
  }
}
