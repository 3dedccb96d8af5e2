// The append-only audit log. Rows cannot be changed or removed (a database trigger refuses it).
import type { Prisma } from '../db/database.js';
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
  ARTIFACT_UPLOADED: 'artifact.uploaded',
  MODEL_CREATED: 'model.created',
  MODEL_UPDATED: 'model.updated',
  VERSION_PUBLISHED: 'model_version.published',
  VERSION_DEPRECATED: 'model_version.deprecated',
  VERSION_ARCHIVED: 'model_version.archived',
  ALIAS_SET: 'model_alias.set',
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

export class AuditService {
  constructor(private readonly prisma: Prisma) {}

  /** Records one event; pass the transaction client to make the event part of the change it describes. */
  async record(actor: Actor | undefined, entry: AuditEntry, tx: Writer = this.prisma): Promise<void> {
    const principal = actor?.principal;
    await tx.auditEvent.create({
      data: {
        action: entry.action,
        actorId: entry.actorId ?? (principal && principal.kind !== 'anonymous' ? principal.userId : null),
        apiKeyId: principal?.kind === 'apiKey' ? principal.apiKeyId : null,
        targetType: entry.targetType ?? null,
        targetId: entry.targetId ?? null,
        ip: actor?.ip ?? null,
        requestId: actor?.requestId ?? null,
        details: entry.details ?? {},
      },
    });
  }
}
