// Webhook endpoints and their delivery log: the account's own (admins may read any). Signing secrets are shown
// once, when made, and kept sealed with the application secret (the server must sign with them, so a hash would
// not do). Every change is audited in its own transaction.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Actor, Principal } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { EventType } from '../events/outbox.js';
import type { Prisma as PrismaNamespace, WebhookEndpoint as EndpointRow } from '../generated/prisma/client.js';
import { isAdmin } from '../models/model-policy.js';
import type { SecretBox } from '../security/secret-box.js';
import { BadUserInputError, ConflictError, ForbiddenError, NotFoundError } from '../server/errors.js';
import { assertPageSize, connectionOf, decodeTimeCursor } from '../server/cursors.js';
import { assertUuid } from '../server/ids.js';
import { cleanText } from '../server/text.js';
import { isPrivateAddress, literalAddress } from './addresses.js';
import {
  defaultSecretLabel,
  endpointSecretLabel,
  messageIdOf,
  type WebhookDeliveries,
  type WebhookOptions,
} from './deliveries.js';
import { newSigningSecret } from './sender.js';
import { auditedWebhookUrl, parseWebhookUrl } from './url.js';

const MAX_DESCRIPTION_LENGTH = 500;
/** Of a delivery's attempts, the log shows the latest this many. */
const MAX_ATTEMPTS_SHOWN = 100;

/** An endpoint as the API shows it: never its secret. */
export interface WebhookEndpointView {
  id: string;
  accountId: string;
  url: string;
  events: EventType[];
  description: string;
  status: 'ACTIVE' | 'DISABLED';
  disabledReason: string | null;
  consecutiveFailures: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface WebhookDeliveryView {
  id: string;
  messageId: string;
  eventId: string;
  eventType: EventType;
  endpointId: string | null;
  url: string;
  status: 'PENDING' | 'SUCCEEDED' | 'FAILED';
  attempts: number;
  lastResponseCode: number | null;
  lastLatencyMs: number | null;
  lastError: string | null;
  nextAttemptAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  attemptLog: {
    number: number;
    at: Date;
    responseCode: number | null;
    latencyMs: number | null;
    error: string | null;
  }[];
}

export interface EndpointInput {
  url?: string | null;
  events?: readonly EventType[] | null;
  description?: string | null;
}

const viewOf = (row: EndpointRow): WebhookEndpointView => ({
  id: row.id,
  accountId: row.accountId,
  url: row.url,
  events: row.events as EventType[],
  description: row.description,
  status: row.status,
  disabledReason: row.disabledReason,
  consecutiveFailures: row.consecutiveFailures,
  createdAt: row.createdAt,
  updatedAt: row.updatedAt,
});

export class WebhooksService {
  constructor(
    private readonly prisma: Prisma,
    private readonly pool: pg.Pool,
    private readonly audit: AuditService,
    private readonly secrets: SecretBox,
    private readonly deliveries: WebhookDeliveries,
    private readonly options: WebhookOptions,
  ) {}

  async create(
    actor: Actor,
    input: EndpointInput & { url: string; events: readonly EventType[] },
  ): Promise<{ endpoint: WebhookEndpointView; secret: string }> {
    const accountId = requireUserId(actor.principal);
    const url = this.#url(input.url);
    const events = eventsOf(input.events);
    const description = cleanText(input.description ?? '', 'input.description', {
      max: MAX_DESCRIPTION_LENGTH,
      min: 0,
    });
    const id = randomUUID();
    const secret = newSigningSecret();
    const created = await this.prisma.$transaction(async (tx) => {
      // Creations of one account take turns, so that the limit holds.
      await tx.$executeRaw`SELECT 1 FROM users WHERE id = ${accountId}::uuid FOR UPDATE`;
      const count = await tx.webhookEndpoint.count({ where: { accountId } });
      if (count >= this.options.maxEndpointsPerAccount)
        throw new BadUserInputError(
          `At most ${this.options.maxEndpointsPerAccount} webhook endpoints per account; delete one first`,
          'input.url',
        );
      const row = await tx.webhookEndpoint.create({
        data: {
          id,
          accountId,
          url,
          events,
          description,
          secretSealed: this.secrets.seal(secret, endpointSecretLabel(id)),
        },
      });
      await this.audit.record(
        actor,
        {
          action: AuditAction.WEBHOOK_ENDPOINT_CREATED,
          targetType: 'WebhookEndpoint',
          targetId: id,
          details: { ...auditedWebhookUrl(url), events },
        },
        tx,
      );
      return row;
    });
    return { endpoint: viewOf(created), secret };
  }

  /** The caller's endpoints, newest first; admins may name another account. */
  async list(actor: Actor, account: string | null | undefined): Promise<WebhookEndpointView[]> {
    const callerId = requireUserId(actor.principal);
    if (account != null) {
      assertUuid(account, 'account');
      if (account !== callerId && !isAdmin(actor.principal))
        throw new ForbiddenError("Only admins may see another account's webhook endpoints");
      if (account !== callerId) await this.#auditAdminRead(actor, 'User', account, 'webhook endpoints');
    }
    const rows = await this.prisma.webhookEndpoint.findMany({
      where: { accountId: account ?? callerId },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    });
    return rows.map(viewOf);
  }

  async update(actor: Actor, id: string, input: EndpointInput): Promise<WebhookEndpointView> {
    const endpoint = await this.#owned(actor, id);
    const url = input.url != null ? this.#url(input.url) : null;
    const data = {
      ...(url !== null ? { url } : {}),
      ...(input.events != null ? { events: eventsOf(input.events) } : {}),
      ...(input.description != null
        ? { description: cleanText(input.description, 'input.description', { max: MAX_DESCRIPTION_LENGTH, min: 0 }) }
        : {}),
    };
    const { url: _url, ...audited } = data;
    return this.#change(actor, endpoint, data, AuditAction.WEBHOOK_ENDPOINT_UPDATED, {
      ...audited,
      ...(url !== null ? auditedWebhookUrl(url) : {}),
    });
  }

  async disable(actor: Actor, id: string): Promise<WebhookEndpointView> {
    const endpoint = await this.#owned(actor, id);
    if (endpoint.status === 'DISABLED') return viewOf(endpoint);
    return this.#change(
      actor,
      endpoint,
      { status: 'DISABLED', disabledReason: 'disabled by its owner' },
      AuditAction.WEBHOOK_ENDPOINT_DISABLED,
    );
  }

  async enable(actor: Actor, id: string): Promise<WebhookEndpointView> {
    const endpoint = await this.#owned(actor, id);
    if (endpoint.status === 'ACTIVE') return viewOf(endpoint);
    return this.#change(
      actor,
      endpoint,
      { status: 'ACTIVE', disabledReason: null, consecutiveFailures: 0, failingSince: null },
      AuditAction.WEBHOOK_ENDPOINT_ENABLED,
    );
  }

  /** A new secret, in force at once (the old one stops signing). */
  async rotateSecret(actor: Actor, id: string): Promise<{ endpoint: WebhookEndpointView; secret: string }> {
    const endpoint = await this.#owned(actor, id);
    const secret = newSigningSecret();
    const changed = await this.#change(
      actor,
      endpoint,
      { secretSealed: this.secrets.seal(secret, endpointSecretLabel(id)) },
      AuditAction.WEBHOOK_ENDPOINT_SECRET_ROTATED,
    );
    return { endpoint: changed, secret };
  }

  /** Deletes the endpoint with its deliveries; a job left for one of them finds it gone and ends. */
  async delete(actor: Actor, id: string): Promise<WebhookEndpointView> {
    const endpoint = await this.#owned(actor, id);
    await this.prisma.$transaction(async (tx) => {
      await tx.webhookEndpoint.delete({ where: { id } });
      await this.audit.record(
        actor,
        {
          action: AuditAction.WEBHOOK_ENDPOINT_DELETED,
          targetType: 'WebhookEndpoint',
          targetId: id,
          details: auditedWebhookUrl(endpoint.url),
        },
        tx,
      );
    });
    return viewOf(endpoint);
  }

  /** The secret that signs deliveries to the caller's predictions' own URLs, replaced and shown. */
  async rotateDefaultSecret(actor: Actor): Promise<{ secret: string }> {
    const accountId = requireUserId(actor.principal);
    const secret = newSigningSecret();
    const sealed = this.secrets.seal(secret, defaultSecretLabel(accountId));
    await this.prisma.$transaction(async (tx) => {
      await tx.webhookSigningSecret.upsert({
        where: { accountId },
        create: { accountId, secretSealed: sealed },
        update: { secretSealed: sealed, createdAt: new Date() },
      });
      await this.audit.record(
        actor,
        { action: AuditAction.WEBHOOK_DEFAULT_SECRET_ROTATED, targetType: 'User', targetId: accountId },
        tx,
      );
    });
    return { secret };
  }

  /** Deliveries newest first: one endpoint's (its owner, admins), or all of the caller's without `endpoint`. */
  async listDeliveries(
    actor: Actor,
    endpoint: string | null | undefined,
    status: WebhookDeliveryView['status'] | null | undefined,
    first: number,
    after: string | null | undefined,
  ) {
    const callerId = requireUserId(actor.principal);
    assertPageSize(first);
    const cursor = after != null ? decodeTimeCursor(after) : null;
    if (endpoint != null) {
      const readable = await this.#readable(actor, endpoint);
      if (readable.accountId !== callerId)
        await this.#auditAdminRead(actor, 'WebhookEndpoint', endpoint, 'webhook deliveries');
    }
    const rows = await this.#deliveries(
      `(($1::uuid IS NOT NULL AND d.endpoint_id = $1) OR ($1::uuid IS NULL AND d.account_id = $2))
       AND ($3::"WebhookDeliveryStatus" IS NULL OR d.status = $3)
       AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))
       ORDER BY d.created_at DESC, d.id DESC LIMIT $6`,
      [endpoint ?? null, callerId, status ?? null, cursor?.createdAt ?? null, cursor?.id ?? null, first + 1],
    );
    return connectionOf(rows, first);
  }

  /**
   * Delivers an ended delivery again, now, on a fresh retry schedule, keeping its `webhook-id`. CONFLICT while it
   * is still being delivered, or when its endpoint is disabled.
   */
  async redeliver(actor: Actor, deliveryId: string): Promise<WebhookDeliveryView> {
    const callerId = requireUserId(actor.principal);
    assertUuid(deliveryId, 'deliveryId');
    const delivery = await this.prisma.webhookDelivery.findUnique({
      where: { id: deliveryId },
      include: { endpoint: { select: { status: true } } },
    });
    if (!delivery || (delivery.accountId !== callerId && !isAdmin(actor.principal)))
      throw new NotFoundError('Webhook delivery');
    if (delivery.accountId !== callerId) throw new ForbiddenError('Only the account it was sent to may redeliver it');
    if (delivery.endpoint?.status === 'DISABLED')
      throw new ConflictError('The endpoint is disabled: enable it before redelivering');
    const redelivered = await this.prisma.$transaction(async (tx) => {
      const count = await tx.$executeRaw`
        UPDATE webhook_deliveries
        SET status = 'PENDING', attempts_before_redelivery = attempts, next_attempt_at = now(), updated_at = now()
        WHERE id = ${deliveryId}::uuid AND status <> 'PENDING'`;
      if (count === 0) return false;
      await this.deliveries.enqueue(tx, deliveryId, delivery.attempts);
      await this.audit.record(
        actor,
        { action: AuditAction.WEBHOOK_REDELIVERED, targetType: 'WebhookDelivery', targetId: deliveryId },
        tx,
      );
      return true;
    });
    if (!redelivered) throw new ConflictError('The delivery is still in progress: it will be attempted again anyway');
    this.deliveries.wake();
    return (await this.#deliveries('d.id = $1', [deliveryId]))[0]!;
  }

  async #deliveries(where: string, values: unknown[]): Promise<WebhookDeliveryView[]> {
    const { rows } = await this.pool.query<{
      id: string;
      event_id: string;
      event_type: EventType;
      endpoint_id: string | null;
      url: string;
      status: WebhookDeliveryView['status'];
      attempts: number;
      last_response_code: number | null;
      last_latency_ms: number | null;
      last_error: string | null;
      next_attempt_at: Date | null;
      created_at: Date;
      updated_at: Date;
      attempt_log: {
        number: number;
        at: string;
        response_code: number | null;
        latency_ms: number | null;
        error: string | null;
      }[];
    }>(
      `SELECT d.id, d.event_id, e.type AS event_type, d.endpoint_id, d.url, d.status, d.attempts, d.last_response_code,
              d.last_latency_ms, d.last_error, d.next_attempt_at, d.created_at, d.updated_at,
              coalesce((SELECT json_agg(a ORDER BY a.number)
                        FROM (SELECT number, at, response_code, latency_ms, error FROM webhook_delivery_attempts
                              WHERE delivery_id = d.id ORDER BY number DESC LIMIT ${MAX_ATTEMPTS_SHOWN}) a),
                       '[]') AS attempt_log
       FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
       WHERE ${where}`,
      values,
    );
    return rows.map((row) => ({
      id: row.id,
      messageId: messageIdOf(row.event_id),
      eventId: row.event_id,
      eventType: row.event_type,
      endpointId: row.endpoint_id,
      url: row.url,
      status: row.status,
      attempts: row.attempts,
      lastResponseCode: row.last_response_code,
      lastLatencyMs: row.last_latency_ms,
      lastError: row.last_error,
      nextAttemptAt: row.next_attempt_at,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      attemptLog: row.attempt_log.map((attempt) => ({
        number: attempt.number,
        at: new Date(attempt.at),
        responseCode: attempt.response_code,
        latencyMs: attempt.latency_ms,
        error: attempt.error,
      })),
    }));
  }

  async #auditAdminRead(actor: Actor, targetType: string, targetId: string, read: string): Promise<void> {
    await this.audit.record(actor, { action: AuditAction.ADMIN_READ, targetType, targetId, details: { read } });
  }

  #url(value: string): string {
    const url = parseWebhookUrl(value, 'input.url');
    const literal = literalAddress(url);
    if (literal && !this.options.allowPrivateNetworks && isPrivateAddress(literal))
      throw new BadUserInputError(
        'A webhook URL cannot lead to a loopback, private, link-local or metadata address',
        'input.url',
      );
    return url.href;
  }

  async #change(
    actor: Actor,
    endpoint: EndpointRow,
    data: PrismaNamespace.WebhookEndpointUpdateInput,
    action: AuditAction,
    details: Record<string, string | string[]> = {},
  ): Promise<WebhookEndpointView> {
    const updated = await this.prisma.$transaction(async (tx) => {
      const row = await tx.webhookEndpoint.update({ where: { id: endpoint.id }, data });
      await this.audit.record(actor, { action, targetType: 'WebhookEndpoint', targetId: endpoint.id, details }, tx);
      return row;
    });
    return viewOf(updated);
  }

  /** The caller's endpoint; NOT_FOUND for anyone else's, FORBIDDEN for an admin (who may only read it). */
  async #owned(actor: Actor, id: string): Promise<EndpointRow> {
    const endpoint = await this.#readable(actor, id);
    if (endpoint.accountId !== requireUserId(actor.principal))
      throw new ForbiddenError("Admins may read another account's webhook endpoints, not change them");
    return endpoint;
  }

  async #readable(actor: Actor, id: string): Promise<EndpointRow> {
    assertUuid(id, 'id');
    const endpoint = await this.prisma.webhookEndpoint.findUnique({ where: { id } });
    if (!endpoint || !canRead(actor.principal, endpoint)) throw new NotFoundError('Webhook endpoint');
    return endpoint;
  }
}

function canRead(principal: Principal, endpoint: EndpointRow): boolean {
  return isAdmin(principal) || (principal.kind !== 'anonymous' && principal.userId === endpoint.accountId);
}

function eventsOf(events: readonly EventType[]): EventType[] {
  if (events.length === 0)
    throw new BadUserInputError('Subscribe the endpoint to at least one event type', 'input.events');
  return [...new Set(events)];
}
