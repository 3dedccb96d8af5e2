// Labelled data sets: uploaded (POST /v1/datasets), listed, read and deleted by their uploader; admins see and use
// any. Never public: whoever else asks is told there is no such data set. A data set is checked for its form at
// upload and against a version's signature only when it is evaluated (it is not tied to a model).
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { requireUserId, type Actor } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { Dataset } from '../generated/prisma/client.js';
import { isAdmin } from '../models/model-policy.js';
import { BadUserInputError, NotFoundError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { concatInSlices } from '../server/request-body.js';
import { cleanText } from '../server/text.js';
import { DatasetFormatError, scanDataset, type DatasetFormat, type DatasetLimits } from './dataset-format.js';

/** Bytes per stored part, and per hash update between two yields to the event loop. */
const PART_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;
const MAX_NAME_LENGTH = 200;

export interface DatasetUpload {
  bytes: Buffer;
  format: DatasetFormat;
  name?: string | null;
}

/** The sha256 of `bytes`, hashed a part per event-loop turn. */
async function sha256Of(bytes: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for (let start = 0; start < bytes.length; start += PART_BYTES) {
    hash.update(bytes.subarray(start, start + PART_BYTES));
    await nextTurn();
  }
  return hash.digest('hex');
}

export class DatasetsService {
  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly audit: AuditService,
    private readonly limits: DatasetLimits & { maxBytes: number },
  ) {}

  get maxBytes(): number {
    return this.limits.maxBytes;
  }

  /**
   * Stores a data set for its uploader; the same bytes uploaded again by the same user answer the data set they
   * made the first time (`created: false`). A file that is not a labelled data set is BAD_USER_INPUT naming its
   * first bad line.
   */
  async upload(actor: Actor, upload: DatasetUpload): Promise<{ dataset: Dataset; created: boolean }> {
    const ownerId = requireUserId(actor.principal);
    const name = cleanText(upload.name ?? '', 'name', { max: MAX_NAME_LENGTH, min: 0, singleLine: true });
    if (upload.bytes.length > this.limits.maxBytes) {
      throw new BadUserInputError(`A data set is at most ${this.limits.maxBytes} bytes`, 'body');
    }
    const sha256 = await sha256Of(upload.bytes);
    const existing = await this.prisma.dataset.findUnique({ where: { ownerId_sha256: { ownerId, sha256 } } });
    if (existing) return { dataset: existing, created: false };
    let scanned: { rows: number; columns: string[] };
    try {
      scanned = await scanDataset(upload.bytes, upload.format, this.limits);
    } catch (error) {
      if (!(error instanceof DatasetFormatError)) throw error;
      throw new BadUserInputError(`Not a ${upload.format} data set: ${error.message}`, 'body', {
        ...(error.line === null ? {} : { line: error.line }),
      });
    }
    const client = await this.pool.connect();
    let id: string;
    try {
      await client.query('BEGIN');
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO datasets (id, owner_id, name, format, sha256, size_bytes, rows, columns)
         VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (owner_id, sha256) DO NOTHING RETURNING id`,
        [ownerId, name, upload.format, sha256, upload.bytes.length, scanned.rows, scanned.columns],
      );
      if (inserted.rows.length === 0) {
        // The same upload, concurrently: the first one made it.
        await client.query('ROLLBACK');
        const made = await this.prisma.dataset.findUniqueOrThrow({ where: { ownerId_sha256: { ownerId, sha256 } } });
        return { dataset: made, created: false };
      }
      id = inserted.rows[0]!.id;
      // One part per statement, through node-pg (which sends a Buffer as it is): no statement carries the whole upload.
      for (let part = 0; part * PART_BYTES < upload.bytes.length; part++) {
        await client.query('INSERT INTO dataset_parts (dataset_id, part, bytes) VALUES ($1, $2, $3)', [
          id,
          part,
          upload.bytes.subarray(part * PART_BYTES, (part + 1) * PART_BYTES),
        ]);
      }
      await this.audit.recordOn(client, actor, {
        action: AuditAction.DATASET_UPLOADED,
        targetType: 'Dataset',
        targetId: id,
        details: { sha256, format: upload.format, rows: scanned.rows, sizeBytes: upload.bytes.length },
      });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
    return { dataset: await this.prisma.dataset.findUniqueOrThrow({ where: { id } }), created: true };
  }

  /** The caller's data sets, newest first. */
  mine(actor: Actor): Promise<Dataset[]> {
    return this.prisma.dataset.findMany({
      where: { ownerId: requireUserId(actor.principal) },
      orderBy: [{ createdAt: 'desc' }, { id: 'asc' }],
    });
  }

  /** A data set the caller may use (theirs; admins: any), or NOT_FOUND. */
  async find(actor: Actor, id: string, field = 'id'): Promise<Dataset> {
    assertUuid(id, field);
    const dataset = await this.prisma.dataset.findUnique({ where: { id } });
    if (!dataset || !this.#canUse(actor, dataset)) throw new NotFoundError('Dataset');
    return dataset;
  }

  /**
   * A data set's bytes, as uploaded, read a part per query: node-pg decodes a whole result in one event-loop
   * turn, which for a 50 MB data set in one result held the loop for most of a second.
   */
  async content(dataset: Pick<Dataset, 'id' | 'sizeBytes'>): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let part = 0; part * PART_BYTES < dataset.sizeBytes; part++) {
      const { rows } = await this.pool.query<{ bytes: Buffer }>(
        'SELECT bytes FROM dataset_parts WHERE dataset_id = $1 AND part = $2',
        [dataset.id, part],
      );
      if (rows.length === 0) throw new NotFoundError('Dataset');
      parts.push(rows[0]!.bytes);
    }
    return concatInSlices(parts, dataset.sizeBytes);
  }

  /**
   * The whole lines of a data set from byte `offset` on, read a part at a time until they hold at least `lines`
   * line ends or the data set ends: what a batch prediction's chunk runs, without the rest of the data set.
   */
  async linesFrom(dataset: Pick<Dataset, 'id' | 'sizeBytes'>, offset: number, lines: number): Promise<Buffer> {
    const first = Math.floor(offset / PART_BYTES);
    const parts: Buffer[] = [];
    let read = 0;
    for (let part = first, ends = 0; ends < lines && part * PART_BYTES < dataset.sizeBytes; part++) {
      const { rows } = await this.pool.query<{ bytes: Buffer }>(
        'SELECT bytes FROM dataset_parts WHERE dataset_id = $1 AND part = $2',
        [dataset.id, part],
      );
      if (rows.length === 0) throw new NotFoundError('Dataset');
      const bytes = part === first ? rows[0]!.bytes.subarray(offset - first * PART_BYTES) : rows[0]!.bytes;
      parts.push(bytes);
      read += bytes.length;
      for (let at = bytes.indexOf(NEWLINE); at !== -1 && ends < lines; at = bytes.indexOf(NEWLINE, at + 1)) ends++;
    }
    const bytes = Buffer.concat(parts, read);
    // A line cut at the last part read is left to the next chunk.
    return offset + read < dataset.sizeBytes ? bytes.subarray(0, bytes.lastIndexOf(NEWLINE) + 1) : bytes;
  }

  /** Deletes one of the caller's data sets (admins: any); evaluations made on it keep its sha256. */
  async delete(actor: Actor, id: string): Promise<Dataset> {
    const dataset = await this.find(actor, id);
    await this.prisma.$transaction(async (tx) => {
      await tx.dataset.delete({ where: { id } });
      await this.audit.record(
        actor,
        {
          action: AuditAction.DATASET_DELETED,
          targetType: 'Dataset',
          targetId: id,
          details: { sha256: dataset.sha256 },
        },
        tx,
      );
    });
    return dataset;
  }

  #canUse(actor: Actor, dataset: Dataset): boolean {
    return (
      (actor.principal.kind !== 'anonymous' && actor.principal.userId === dataset.ownerId) || isAdmin(actor.principal)
    );
  }
}
