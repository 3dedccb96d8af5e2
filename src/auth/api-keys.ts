// API keys for client apps: `mmk_<8-char id>_<43-char secret>`. Only a SHA-256 of the whole key is stored
// (the secret has 256 bits of entropy, so a slow hash adds nothing); the public `mmk_<id>` finds the row, which is
// cached by prefix until the change feed reports a change of the key or its account. The presented secret's hash
// is compared with the row's, in constant time, on every request.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Change, type ChangeFeed } from '../db/change-feed.js';
import type { Prisma } from '../db/database.js';
import { FeedCache } from '../db/feed-cache.js';
import type pg from 'pg';
import type { ApiKey, ApiScope, Prisma as P, Role } from '../generated/prisma/client.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { BadUserInputError, ForbiddenError, NotFoundError, UnauthenticatedError } from '../server/errors.js';
import type { Actor, AuthenticatedPrincipal, Principal } from './principal.js';
import { connectionOf, newestFirstPage } from '../server/cursors.js';
import { assertUuid } from '../server/ids.js';
import { cleanText } from '../server/text.js';

export const API_KEY_PREFIX = 'mmk_';
const KEY_PATTERN = /^(mmk_[A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$/;
const MAX_KEYS_PER_USER = 100;

const sha256 = (value: string) => createHash('sha256').update(value).digest();

function newKey(): { prefix: string; secret: string } {
  const id = randomBytes(6).toString('base64url').replace(/[-_]/g, '0').slice(0, 8);
  const prefix = `${API_KEY_PREFIX}${id}`;
  return { prefix, secret: `${prefix}_${randomBytes(32).toString('base64url')}` };
}

/** What authenticating with a key needs to know of its row and its account. */
interface StoredKey {
  id: string;
  prefix: string;
  secretHash: Buffer;
  scopes: ApiScope[];
  revoked: boolean;
  userId: string;
  role: Role;
}

export function looksLikeApiKey(credential: string): boolean {
  return credential.startsWith(API_KEY_PREFIX);
}

/**
 * The principal a background job (async or batch prediction) acts as for the user who started it, read now: their
 * current role, and the API key it was started with, if any. Work started with a key runs only while that key could
 * start it: FORBIDDEN (API_KEY_REVOKED) once the key is revoked, deleted or no longer has the PREDICT scope. Null
 * when the user is gone. `work` names it in the error ("batch", "prediction").
 */
export async function requesterPrincipal(
  db: pg.Pool | pg.PoolClient,
  userId: string,
  apiKeyId: string | null,
  work: string,
): Promise<AuthenticatedPrincipal | null> {
  const { rows } = await db.query<{ role: Role }>('SELECT role FROM users WHERE id = $1', [userId]);
  if (rows.length === 0) return null;
  const role = rows[0]!.role;
  if (apiKeyId === null) return { kind: 'user', userId, role, sessionId: '' };
  const { rows: keys } = await db.query<{ scopes: ApiScope[] }>(
    'SELECT scopes::text[] AS scopes FROM api_keys WHERE id = $1 AND revoked_at IS NULL',
    [apiKeyId],
  );
  const scopes = keys[0]?.scopes;
  if (!scopes?.includes('PREDICT')) {
    throw new ForbiddenError(`The API key that started the ${work} was revoked or lost its PREDICT scope`, {
      reason: 'API_KEY_REVOKED',
    });
  }
  return { kind: 'apiKey', userId, role, apiKeyId, scopes };
}

export class ApiKeyService {
  // lastUsedAt is kept here and written in one statement every flush interval, not on every request.
  #pendingLastUsed = new Map<string, Date>();
  #timer: NodeJS.Timeout;
  /** Keys by prefix. Unknown prefixes are not kept (anyone can make up as many as they like). */
  readonly #keys: FeedCache<StoredKey>;

  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly audit: AuditService,
    private readonly changes: ChangeFeed,
    flushIntervalMs: number,
  ) {
    this.#keys = new FeedCache(changes, {
      max: 50_000,
      kinds: ['k', 'u'],
      dependsOn: (key) => [Change.apiKey(key.prefix), Change.user(key.userId)],
    });
    this.#timer = setInterval(() => void this.flushUsage().catch(() => undefined), flushIntervalMs);
    this.#timer.unref();
  }

  async create(actor: Actor, rawName: string, scopes: ApiScope[]): Promise<{ apiKey: ApiKey; secret: string }> {
    const userId = requireUser(actor.principal);
    const name = cleanText(rawName, 'name', { max: 100, singleLine: true });
    if (scopes.length === 0) throw new BadUserInputError('Give the key at least one scope', 'scopes');
    const existing = await this.prisma.apiKey.count({ where: { userId, revokedAt: null } });
    if (existing >= MAX_KEYS_PER_USER) {
      throw new BadUserInputError(`At most ${MAX_KEYS_PER_USER} active keys per account; revoke one first`, 'name');
    }
    const { prefix, secret } = newKey();
    const apiKey = await this.prisma.$transaction(async (tx) => {
      const created = await tx.apiKey.create({
        data: { userId, name, prefix, secretHash: sha256(secret).toString('hex'), scopes: [...new Set(scopes)] },
      });
      await this.audit.record(
        actor,
        { action: AuditAction.API_KEY_CREATED, targetType: 'ApiKey', targetId: created.id, details: { name, scopes } },
        tx,
      );
      return created;
    });
    return { apiKey, secret };
  }

  async listOwn(actor: Actor): Promise<ApiKey[]> {
    const userId = requireUser(actor.principal);
    const keys = await this.prisma.apiKey.findMany({ where: { userId }, orderBy: { createdAt: 'desc' } });
    return keys.map((key) => this.#withLastUse(key));
  }

  /** The caller's keys, newest first, a page at a time; revoked ones only with `includeRevoked`. */
  async listOwnConnection(actor: Actor, includeRevoked: boolean, first: number, after: string | null | undefined) {
    const userId = requireUser(actor.principal);
    const afterCursor = newestFirstPage(first, after);
    const where: P.ApiKeyWhereInput = { userId, ...(includeRevoked ? {} : { revokedAt: null }) };
    const [keys, totalCount] = await Promise.all([
      this.prisma.apiKey.findMany({
        where: { AND: [where, ...afterCursor] },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: first + 1,
      }),
      this.prisma.apiKey.count({ where }),
    ]);
    return {
      ...connectionOf(
        keys.map((key) => this.#withLastUse(key)),
        first,
      ),
      totalCount,
    };
  }

  /** A key as last used, counting uses not flushed yet. */
  #withLastUse(key: ApiKey): ApiKey {
    return { ...key, lastUsedAt: this.#pendingLastUsed.get(key.id) ?? key.lastUsedAt };
  }

  /** Revokes one of the caller's keys (admins: anyone's). Revoking a revoked key returns it unchanged. */
  async revoke(actor: Actor, id: string): Promise<ApiKey> {
    const userId = requireUser(actor.principal);
    assertUuid(id, 'id');
    const key = await this.prisma.apiKey.findUnique({ where: { id } });
    const isAdmin = actor.principal.kind !== 'anonymous' && actor.principal.role === 'ADMIN';
    if (!key || (key.userId !== userId && !isAdmin)) throw new NotFoundError('API key');
    if (key.revokedAt) return key;
    const revoked = await this.prisma.$transaction(async (tx) => {
      const updated = await tx.apiKey.update({ where: { id }, data: { revokedAt: new Date() } });
      await this.audit.record(
        actor,
        { action: AuditAction.API_KEY_REVOKED, targetType: 'ApiKey', targetId: id, details: { owner: key.userId } },
        tx,
      );
      return updated;
    });
    await this.changes.published([Change.apiKey(key.prefix)]);
    return revoked;
  }

  /** The principal for a presented key; unknown, malformed and revoked keys are UNAUTHENTICATED. */
  async authenticate(credential: string): Promise<Principal> {
    const match = KEY_PATTERN.exec(credential);
    if (!match) throw new UnauthenticatedError('Invalid API key');
    const prefix = match[1]!;
    const key = this.#keys.get(prefix) ?? (await this.#keys.load(prefix, () => this.#read(prefix)));
    const presented = sha256(credential);
    const valid = key !== undefined && timingSafeEqual(presented, key.secretHash) && !key.revoked;
    if (!valid) throw new UnauthenticatedError('Invalid API key');
    this.#pendingLastUsed.set(key.id, new Date());
    return { kind: 'apiKey', userId: key.userId, role: key.role, apiKeyId: key.id, scopes: key.scopes };
  }

  /** One prepared statement on the pool rather than a Prisma query: every cache miss runs it. */
  async #read(prefix: string): Promise<StoredKey | undefined> {
    const { rows } = await this.pool.query<{
      id: string;
      secret_hash: string;
      scopes: ApiScope[];
      revoked: boolean;
      user_id: string;
      role: Role;
    }>({
      name: 'mm_api_key_principal',
      text: `SELECT k.id, k.secret_hash, k.scopes::text[] AS scopes, k.revoked_at IS NOT NULL AS revoked, u.id AS user_id, u.role
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = $1`,
      values: [prefix],
    });
    const row = rows[0];
    return (
      row && {
        id: row.id,
        prefix,
        secretHash: Buffer.from(row.secret_hash, 'hex'),
        scopes: row.scopes,
        revoked: row.revoked,
        userId: row.user_id,
        role: row.role,
      }
    );
  }

  /** Writes the coalesced lastUsedAt values in one statement. */
  async flushUsage(): Promise<void> {
    if (this.#pendingLastUsed.size === 0) return;
    const batch = [...this.#pendingLastUsed];
    this.#pendingLastUsed = new Map();
    const ids = batch.map(([id]) => id);
    const times = batch.map(([, at]) => at.toISOString());
    await this.prisma.$executeRaw`
      UPDATE api_keys SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, u.at), u.at)
      FROM unnest(${ids}::uuid[], ${times}::timestamptz[]) AS u(id, at)
      WHERE api_keys.id = u.id`;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flushUsage();
  }
}

/** API-key management needs a user session: a key cannot mint or list keys. */
function requireUser(principal: Principal): string {
  if (principal.kind === 'user') return principal.userId;
  if (principal.kind === 'apiKey') throw new ForbiddenError('API keys cannot manage API keys');
  throw new UnauthenticatedError();
}
