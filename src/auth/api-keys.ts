// API keys for client apps: `mmk_<8-char id>_<43-char secret>`. Only a SHA-256 of the whole key is stored
// (the secret has 256 bits of entropy, so a slow hash adds nothing); the public `mmk_<id>` finds the row.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Prisma } from '../db/database.js';
import type pg from 'pg';
import type { ApiKey, ApiScope, Role } from '../generated/prisma/client.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { BadUserInputError, ForbiddenError, NotFoundError, UnauthenticatedError } from '../server/errors.js';
import type { Actor, Principal } from './principal.js';
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

export function looksLikeApiKey(credential: string): boolean {
  return credential.startsWith(API_KEY_PREFIX);
}

export class ApiKeyService {
  // lastUsedAt is kept here and written in one statement every flush interval, not on every request.
  #pendingLastUsed = new Map<string, Date>();
  #timer: NodeJS.Timeout;

  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly audit: AuditService,
    flushIntervalMs: number,
  ) {
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
    return keys.map((key) => ({ ...key, lastUsedAt: this.#pendingLastUsed.get(key.id) ?? key.lastUsedAt }));
  }

  /** Revokes one of the caller's keys (admins: anyone's). Revoking a revoked key returns it unchanged. */
  async revoke(actor: Actor, id: string): Promise<ApiKey> {
    const userId = requireUser(actor.principal);
    assertUuid(id, 'id');
    const key = await this.prisma.apiKey.findUnique({ where: { id } });
    const isAdmin = actor.principal.kind !== 'anonymous' && actor.principal.role === 'ADMIN';
    if (!key || (key.userId !== userId && !isAdmin)) throw new NotFoundError('API key');
    if (key.revokedAt) return key;
    return this.prisma.$transaction(async (tx) => {
      const revoked = await tx.apiKey.update({ where: { id }, data: { revokedAt: new Date() } });
      await this.audit.record(
        actor,
        { action: AuditAction.API_KEY_REVOKED, targetType: 'ApiKey', targetId: id, details: { owner: key.userId } },
        tx,
      );
      return revoked;
    });
  }

  /** The principal for a presented key; unknown, malformed and revoked keys are UNAUTHENTICATED. */
  async authenticate(credential: string): Promise<Principal> {
    const match = KEY_PATTERN.exec(credential);
    if (!match) throw new UnauthenticatedError('Invalid API key');
    // Every API-key request runs this: one prepared statement on the pool rather than a Prisma query.
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
      values: [match[1]],
    });
    const key = rows[0];
    const presented = sha256(credential);
    const valid = key !== undefined && timingSafeEqual(presented, Buffer.from(key.secret_hash, 'hex')) && !key.revoked;
    if (!valid) throw new UnauthenticatedError('Invalid API key');
    this.#pendingLastUsed.set(key.id, new Date());
    return { kind: 'apiKey', userId: key.user_id, role: key.role, apiKeyId: key.id, scopes: key.scopes };
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
