// The append-only audit log. Rows cannot be changed or removed (a database trigger refuses it).
import type pg from 'pg';
import type { Prisma } from '../db/database.js';
import { assertPageSize } from '../server/cursors.js';
import { BadUserInputError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import type { Prisma as PrismaNamespace } from '../generated/prisma/client.js';
import type { Actor } from '../auth/principal.js';

/** Every audited action, in one vocabulary. */
export const AuditAction = {
  SIGN_UP: 'auth.sign_up',
  LOG_IN: 'auth.log_in',
  LOG_IN_FAILED: 'auth.log_in_failed',
  LOG_IN_THROTTLED: 'auth.log_in_throttled',
  LOG_OUT: 'auth.log_out',
  REFRESH_TOKEN_REUSED: 'auth.refresh_token_reused',
  API_KEY_CREATED: 'api_key.created',
  API_KEY_REVOKED: 'api_key.revoked',
  ROLE_CHANGED: 'user.role_changed',
  ADMIN_BOOTSTRAPPED: 'user.admin_bootstrapped',
  ADMIN_BOOTSTRAP_REFUSED: 'user.admin_bootstrap_refused',
  ARTIFACT_UPLOADED: 'artifact.uploaded',
  MODEL_CREATED: 'model.created',
  MODEL_UPDATED: 'model.updated',
  VERSION_PUBLISHED: 'model_version.published',
  VERSION_DEPRECATED: 'model_version.deprecated',
  VERSION_ARCHIVED: 'model_version.archived',
  ALIAS_SET: 'model_alias.set',
  PLAN_CREATED: 'plan.created',
  PLAN_UPDATED: 'plan.updated',
  PLAN_RETIRED: 'plan.retired',
  CONTRACT_CREATED: 'contract.created',
  CONTRACT_APPROVED: 'contract.approved',
  CONTRACT_REJECTED: 'contract.rejected',
  CONTRACT_SUSPENDED: 'contract.suspended',
  CONTRACT_RESUMED: 'contract.resumed',
  CONTRACT_REVOKED: 'contract.revoked',
  CONTRACT_CANCELLED: 'contract.cancelled',
  ADMIN_READ: 'admin.read',
  VERSION_DOWNLOADED: 'model_version.downloaded',
  WATERMARK_VERIFIED: 'watermark.verified',
  DATASET_UPLOADED: 'dataset.uploaded',
  DATASET_DELETED: 'dataset.deleted',
  EVALUATION_STARTED: 'evaluation.started',
  EVALUATION_CANCELLED: 'evaluation.cancelled',
  EVALUATION_PUBLISHED: 'evaluation.published',
  WEBHOOK_ENDPOINT_CREATED: 'webhook_endpoint.created',
  WEBHOOK_ENDPOINT_UPDATED: 'webhook_endpoint.updated',
  WEBHOOK_ENDPOINT_DISABLED: 'webhook_endpoint.disabled',
  WEBHOOK_ENDPOINT_AUTO_DISABLED: 'webhook_endpoint.auto_disabled',
  WEBHOOK_ENDPOINT_ENABLED: 'webhook_endpoint.enabled',
  WEBHOOK_ENDPOINT_SECRET_ROTATED: 'webhook_endpoint.secret_rotated',
  WEBHOOK_ENDPOINT_DELETED: 'webhook_endpoint.deleted',
  WEBHOOK_REDELIVERED: 'webhook_delivery.redelivered',
  WEBHOOK_DEFAULT_SECRET_ROTATED: 'webhook_default_secret.rotated',
  /** The version a contract is served changed: followed its alias, accepted, or applied after the grace period. */
  CONTRACT_VERSION_SWITCHED: 'contract.version_switched',
  CONTRACT_UPGRADE_OFFERED: 'contract.upgrade_offered',
  CONTRACT_UPGRADE_DECLINED: 'contract.upgrade_declined',
  /** The offered version was archived: the offer (and its grace application) is gone. */
  CONTRACT_UPGRADE_WITHDRAWN: 'contract.upgrade_withdrawn',
  BATCH_PREDICTION_STARTED: 'batch_prediction.started',
  BATCH_PREDICTION_CANCELED: 'batch_prediction.canceled',
} as const;
export type AuditAction = (typeof AuditAction)[keyof typeof AuditAction];

export interface AuditEntry {
  action: AuditAction;
  targetType?: string;
  targetId?: string;
  details?: PrismaNamespace.InputJsonObject;
  /** Overrides the acting user, e.g. for a failed log-in attributed to the account it targeted. */
  actorId?: string;
}

type Writer = Pick<Prisma, 'auditEvent'>;

export interface AuditEventFilter {
  actor?: string | null;
  action?: string | null;
  target?: string | null;
  from?: Date | null;
  to?: Date | null;
}

const SEQ = /^\d{1,18}$/;

/** The columns of an event, as both writers store them. */
function eventRow(actor: Actor | undefined, entry: AuditEntry) {
  const principal = actor?.principal;
  return {
    action: entry.action,
    actorId: entry.actorId ?? (principal && principal.kind !== 'anonymous' ? principal.userId : null),
    apiKeyId: principal?.kind === 'apiKey' ? principal.apiKeyId : null,
    targetType: entry.targetType ?? null,
    targetId: entry.targetId ?? null,
    ip: actor?.ip ?? null,
    requestId: actor?.requestId ?? null,
    details: entry.details ?? {},
  };
}

export class AuditService {
  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
  ) {}

  /** Events newest first, by chain position; `after` is the chainSeq of the last event already seen. */
  async list(filter: AuditEventFilter | null | undefined, first: number, after: string | null | undefined) {
    assertPageSize(first, 500);
    if (after != null && !SEQ.test(after)) throw new BadUserInputError('Invalid cursor', 'after');
    if (filter?.actor != null) assertUuid(filter.actor, 'filter.actor');
    const action = filter?.action?.trim();
    const where: PrismaNamespace.AuditEventWhereInput = {
      ...(filter?.actor ? { actorId: filter.actor } : {}),
      ...(action ? (action.endsWith('*') ? { action: { startsWith: action.slice(0, -1) } } : { action }) : {}),
      ...(filter?.target ? { targetId: filter.target } : {}),
      ...(filter?.from || filter?.to
        ? { at: { ...(filter.from ? { gte: filter.from } : {}), ...(filter.to ? { lt: filter.to } : {}) } }
        : {}),
      ...(after != null ? { chainSeq: { lt: BigInt(after) } } : {}),
    };
    const rows = await this.prisma.auditEvent.findMany({ where, orderBy: { chainSeq: 'desc' }, take: first + 1 });
    const page = rows.slice(0, first);
    const cursor = (e: (typeof rows)[number]) => String(e.chainSeq);
    return {
      edges: page.map((node) => ({ cursor: cursor(node), node })),
      pageInfo: { hasNextPage: rows.length > first, endCursor: page.length ? cursor(page.at(-1)!) : null },
    };
  }

  /**
   * Recomputes every link between two chain positions with the same SQL function that wrote them, and
   * reports the first event whose previous-hash link or own hash does not match.
   */
  async verifyChain(from: string | null | undefined, to: string | null | undefined) {
    for (const [value, field] of [
      [from, 'from'],
      [to, 'to'],
    ] as const) {
      if (value != null && !SEQ.test(value))
        throw new BadUserInputError(`${field} must be a chain sequence number`, field);
    }
    const { rows } = await this.pool.query<{ checked: number; broken_seq: string | null; reason: string | null }>(
      `WITH chain AS (
         SELECT e.chain_seq, e.prev_hash, e.hash, mm_audit_event_hash(e, e.prev_hash) AS recomputed,
                lag(e.hash) OVER (ORDER BY e.chain_seq) AS previous_hash, lag(e.chain_seq) OVER (ORDER BY e.chain_seq) AS previous_seq
         FROM audit_events e
         WHERE e.chain_seq >= coalesce($1::bigint, 1) - 1 AND e.chain_seq <= coalesce($2::bigint, 9223372036854775807)
       ), checked AS (
         SELECT * FROM chain WHERE chain_seq >= coalesce($1::bigint, 1)
       ), broken AS (
         SELECT chain_seq,
                CASE WHEN hash IS DISTINCT FROM recomputed THEN 'event content does not match its hash'
                     WHEN previous_seq IS NOT NULL AND previous_seq <> chain_seq - 1 THEN 'an event before it is missing'
                     WHEN chain_seq = 1 AND prev_hash <> 'genesis' THEN 'the first event does not start the chain'
                     WHEN previous_seq IS NOT NULL AND prev_hash IS DISTINCT FROM previous_hash THEN 'link to the previous event is broken'
                END AS reason
         FROM checked
       )
       SELECT (SELECT count(*)::int FROM checked) AS checked,
              (SELECT chain_seq::text FROM broken WHERE reason IS NOT NULL ORDER BY chain_seq LIMIT 1) AS broken_seq,
              (SELECT reason FROM broken WHERE reason IS NOT NULL ORDER BY chain_seq LIMIT 1) AS reason`,
      [from ?? null, to ?? null],
    );
    const result = rows[0]!;
    return {
      ok: result.broken_seq === null,
      checked: result.checked,
      firstBrokenSeq: result.broken_seq,
      reason: result.reason,
    };
  }

  /** Records one event; pass the transaction client to make the event part of the change it describes. */
  async record(actor: Actor | undefined, entry: AuditEntry, tx: Writer = this.prisma): Promise<void> {
    await tx.auditEvent.create({ data: eventRow(actor, entry) });
  }

  /**
   * Records several events, in order, in one statement of one array per column (a change that touches many rows, such
   * as an alias move over thousands of contracts): Prisma's createMany took 7 s for 4,000 events, this under one.
   */
  async recordMany(
    actor: Actor | undefined,
    entries: AuditEntry[],
    tx: Pick<Prisma, '$executeRaw'> = this.prisma,
  ): Promise<void> {
    if (entries.length === 0) return;
    const rows = entries.map((entry) => eventRow(actor, entry));
    const column = <K extends keyof (typeof rows)[number]>(key: K) => rows.map((row) => row[key]);
    await tx.$executeRaw`
      INSERT INTO audit_events (action, actor_id, api_key_id, target_type, target_id, ip, request_id, details)
      SELECT action, actor_id, api_key_id, target_type, target_id, ip, request_id, details::jsonb
      FROM unnest(${column('action')}::text[], ${column('actorId')}::uuid[], ${column('apiKeyId')}::uuid[],
                  ${column('targetType')}::text[], ${column('targetId')}::text[], ${column('ip')}::text[],
                  ${column('requestId')}::text[], ${rows.map((row) => JSON.stringify(row.details))}::text[])
        WITH ORDINALITY AS e(action, actor_id, api_key_id, target_type, target_id, ip, request_id, details, n)
      ORDER BY n`;
  }

  /**
   * Records one event on a node-pg client, inside the transaction it has open: for changes written with node-pg
   * (bulk bytes, which node-pg sends as they are and Prisma's engine re-encodes on the event loop).
   */
  async recordOn(client: pg.ClientBase, actor: Actor | undefined, entry: AuditEntry): Promise<void> {
    const row = eventRow(actor, entry);
    await client.query(
      `INSERT INTO audit_events (action, actor_id, api_key_id, target_type, target_id, ip, request_id, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [row.action, row.actorId, row.apiKeyId, row.targetType, row.targetId, row.ip, row.requestId, row.details],
    );
  }
}
