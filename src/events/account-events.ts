// The account's own events (Stripe's events list): what its webhooks were, or will be, sent, newest first.
import { requireUserId, type Actor } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Prisma } from '../db/database.js';
import type { EventFilter } from '../generated/graphql.js';
import { assertPageSize, decodeCursor, encodeCursor, isIsoTime } from '../server/cursors.js';
import { isAdmin } from '../models/model-policy.js';
import { BadUserInputError, ForbiddenError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { EVENT_TYPES, type EventType } from './outbox.js';

export class AccountEvents {
  constructor(
    private readonly prisma: Prisma,
    private readonly audit: AuditService,
  ) {}

  async list(actor: Actor, filter: EventFilter | null | undefined, first: number, after: string | null | undefined) {
    const callerId = requireUserId(actor.principal);
    const accountId = filter?.account ?? callerId;
    if (accountId !== callerId) {
      // Another account's events: admins only (support), audited like their other reads of accounts' data.
      if (!isAdmin(actor.principal)) throw new ForbiddenError("Only admins may read another account's events");
      assertUuid(accountId, 'filter.account');
    }
    assertPageSize(first);
    const type = filter?.type ?? null;
    if (type !== null && !EVENT_TYPES.includes(type as EventType))
      throw new BadUserInputError(`filter.type must be one of ${EVENT_TYPES.join(', ')}`, 'filter.type');
    const position = after == null ? null : decodeCursor(after, isIsoTime);
    const rows = await this.prisma.event.findMany({
      where: {
        accountId,
        ...(type !== null ? { type } : {}),
        ...(filter?.since ? { createdAt: { gte: filter.since } } : {}),
        ...(position
          ? {
              OR: [
                { createdAt: { lt: new Date(position.createdAt) } },
                { createdAt: new Date(position.createdAt), id: { lt: position.id } },
              ],
            }
          : {}),
      },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: first + 1,
      select: { id: true, type: true, data: true, createdAt: true },
    });
    if (accountId !== callerId) {
      await this.audit.record(actor, {
        action: AuditAction.ADMIN_READ,
        targetType: 'User',
        targetId: accountId,
        details: { read: 'events' },
      });
    }
    const page = rows.slice(0, first);
    const cursor = (event: (typeof rows)[number]) =>
      encodeCursor({ createdAt: event.createdAt.toISOString(), id: event.id });
    return {
      edges: page.map((node) => ({ cursor: cursor(node), node })),
      pageInfo: { hasNextPage: rows.length > first, endCursor: page.length ? cursor(page.at(-1)!) : null },
    };
  }
}
