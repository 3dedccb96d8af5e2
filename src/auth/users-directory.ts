// The admins' list of accounts: search by e-mail or display name, filter by role, newest first.
import type { Actor } from './principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Prisma } from '../db/database.js';
import type { Prisma as P, Role } from '../generated/prisma/client.js';
import { connectionOf, newestFirstPage } from '../server/cursors.js';
import { cleanText } from '../server/text.js';

export interface UserFilter {
  /** Matched against e-mail and display name, case-insensitive. */
  search?: string | null;
  role?: Role | null;
}

/** Longer searches match no address or name anyway (both are capped well below). */
const MAX_SEARCH_LENGTH = 200;

export class UsersDirectory {
  constructor(
    private readonly prisma: Prisma,
    private readonly audit: AuditService,
  ) {}

  /** A page of accounts (admins: the caller's role is checked by the field's @auth); the read is audited. */
  async list(actor: Actor, filter: UserFilter | null | undefined, first: number, after: string | null | undefined) {
    const afterCursor = newestFirstPage(first, after);
    const conditions: P.UserWhereInput[] = [];
    if (filter?.search != null) {
      const search = cleanText(filter.search, 'filter.search', { max: MAX_SEARCH_LENGTH, min: 0, singleLine: true });
      if (search.length > 0) {
        conditions.push({
          OR: [
            { email: { contains: search, mode: 'insensitive' } },
            { displayName: { contains: search, mode: 'insensitive' } },
          ],
        });
      }
    }
    if (filter?.role) conditions.push({ role: filter.role });
    await this.audit.record(actor, { action: AuditAction.ADMIN_READ, targetType: 'User', details: { read: 'users' } });
    const [rows, totalCount] = await Promise.all([
      this.prisma.user.findMany({
        where: { AND: [...conditions, ...afterCursor] },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: first + 1,
      }),
      this.prisma.user.count({ where: { AND: conditions } }),
    ]);
    return { ...connectionOf(rows, first), totalCount };
  }
}
