// Contracts: a consumer's licence under a plan's frozen terms, and its life cycle. Each transition is one
// conditional UPDATE (so two concurrent transitions cannot both apply) recorded in the audit log.
import type { Actor, Principal } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { Change, type ChangeFeed } from '../db/change-feed.js';
import type { Prisma } from '../db/database.js';
import { EventType, type EventOutbox } from '../events/outbox.js';
import type {
  Contract,
  ContractStatus,
  LicensePlan,
  Model,
  ModelVersion,
  Prisma as P,
} from '../generated/prisma/client.js';
import { canManage, isAdmin, type ModelAccess } from '../models/model-policy.js';
import { connectionOf, newestFirstPage } from '../server/cursors.js';
import {
  BadUserInputError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  UnauthenticatedError,
} from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { cleanText } from '../server/text.js';
import type { ContractExpiryNotices } from './contract-expiry.js';
import type { PlansService } from './plans-service.js';
import { covers, termsDigest, termsOf } from './terms.js';
import type { UpgradesService } from './upgrades-service.js';

/**
 * The model and plan a consumer's event names: only while the model is PUBLIC (a PRIVATE model's ids stay its
 * owner's, as everywhere else; the consumer still learns what became of its contract).
 */
export function consumerSubject(visibility: string, modelId: string, planId: string) {
  return visibility === 'PUBLIC' ? { modelId, planId } : {};
}

/** What clients see: ACTIVE past its expiry reads as EXPIRED (expiry needs no job to take effect). */
export type VisibleStatus = ContractStatus | 'EXPIRED';

export function visibleStatus(contract: Pick<Contract, 'status' | 'expiresAt'>, now = new Date()): VisibleStatus {
  return contract.status === 'ACTIVE' && contract.expiresAt !== null && contract.expiresAt <= now
    ? 'EXPIRED'
    : contract.status;
}

const DAY_MS = 86_400_000;

type Transition = 'approve' | 'reject' | 'suspend' | 'resume' | 'revoke' | 'cancel';

/** `event`: what the consumer is told (the owner's own moves; a consumer's cancel and a resume tell no one). */
const TRANSITIONS: Record<
  Transition,
  { from: ContractStatus[]; to: ContractStatus; action: string; by: 'owner' | 'consumer'; event?: EventType }
> = {
  approve: {
    from: ['PENDING'],
    to: 'ACTIVE',
    action: AuditAction.CONTRACT_APPROVED,
    by: 'owner',
    event: EventType.CONTRACT_APPROVED,
  },
  reject: {
    from: ['PENDING'],
    to: 'REJECTED',
    action: AuditAction.CONTRACT_REJECTED,
    by: 'owner',
    event: EventType.CONTRACT_REJECTED,
  },
  suspend: {
    from: ['ACTIVE'],
    to: 'SUSPENDED',
    action: AuditAction.CONTRACT_SUSPENDED,
    by: 'owner',
    event: EventType.CONTRACT_SUSPENDED,
  },
  resume: { from: ['SUSPENDED'], to: 'ACTIVE', action: AuditAction.CONTRACT_RESUMED, by: 'owner' },
  revoke: {
    from: ['PENDING', 'ACTIVE', 'SUSPENDED'],
    to: 'REVOKED',
    action: AuditAction.CONTRACT_REVOKED,
    by: 'owner',
    event: EventType.CONTRACT_REVOKED,
  },
  cancel: {
    from: ['PENDING', 'ACTIVE', 'SUSPENDED'],
    to: 'CANCELLED',
    action: AuditAction.CONTRACT_CANCELLED,
    by: 'consumer',
  },
};

/** The contract transitions, in the order the console shows them; each is the mutation `${name}Contract`. */
export const TRANSITION_NAMES = Object.keys(TRANSITIONS) as Transition[];

type TransitionSubject = Pick<Contract, 'status' | 'expiresAt' | 'consumerId'>;

/** FORBIDDEN when the caller is not the party a transition belongs to (the consumer, or whoever manages the model). */
function partyRefusal(principal: Principal, transition: Transition, contract: TransitionSubject, model: ModelAccess) {
  const rule = TRANSITIONS[transition];
  const allowed =
    rule.by === 'consumer'
      ? principal.kind !== 'anonymous' && contract.consumerId === principal.userId
      : canManage(principal, model);
  if (allowed) return null;
  return new ForbiddenError(
    rule.by === 'consumer' ? 'Only the consumer can cancel a contract' : 'Only the model owner or an admin can do this',
  );
}

/** BAD_USER_INPUT when the contract's state does not allow a transition now (expired contracts can only be revoked). */
function stateRefusal(transition: Transition, contract: Pick<Contract, 'status' | 'expiresAt'>, now: Date) {
  const rule = TRANSITIONS[transition];
  if (visibleStatus(contract, now) === 'EXPIRED' && transition !== 'revoke')
    return new BadUserInputError('The contract has expired', 'id');
  if (!rule.from.includes(contract.status))
    return new BadUserInputError(`A ${contract.status} contract cannot be ${rule.to.toLowerCase()}`, 'id');
  return null;
}

/**
 * The transitions the caller may make on a contract now, by the rules `transition` applies (Contract.viewerActions;
 * whether the caller's credentials may call the mutations at all is the resolver's @auth check).
 */
export function allowedTransitions(
  principal: Principal,
  contract: TransitionSubject,
  model: ModelAccess,
  now = new Date(),
): Transition[] {
  return TRANSITION_NAMES.filter(
    (name) => partyRefusal(principal, name, contract, model) === null && stateRefusal(name, contract, now) === null,
  );
}

/**
 * Why `principal` may not take `plan` now with acceptLicense (null: it may). `contractsUnderPlan`: the caller's
 * contracts under the plan. LicensePlan.viewerCanAccept answers by it too.
 */
export function acceptRefusal(
  principal: Principal,
  plan: Pick<LicensePlan, 'status'>,
  model: Pick<Model, 'ownerId'>,
  contractsUnderPlan: readonly Pick<Contract, 'status' | 'expiresAt'>[],
) {
  if (principal.kind === 'anonymous') return new UnauthenticatedError();
  if (plan.status !== 'ACTIVE')
    return new BadUserInputError('This plan is retired and takes no new contracts', 'planId');
  if (model.ownerId === principal.userId)
    return new BadUserInputError('Owners call their own models without a licence', 'planId');
  const live = contractsUnderPlan.some(
    (contract) => LIVE_STATUSES.includes(contract.status) && visibleStatus(contract) !== 'EXPIRED',
  );
  return live ? new ConflictError('You already hold a contract under this plan') : null;
}

/** A contract that still binds (or may yet): one per consumer and plan. */
const LIVE_STATUSES: ContractStatus[] = ['PENDING', 'ACTIVE', 'SUSPENDED'];

const VIEWER_CONTRACT_ORDER: VisibleStatus[] = ['ACTIVE', 'PENDING', 'SUSPENDED'];

/**
 * Of a caller's contracts for one model, the one that matters most (Model.viewerContract): the oldest ACTIVE one
 * (the one calls naming no contract are billed to first), else PENDING, else SUSPENDED, else the newest ended one.
 */
export function mostRelevantContract<T extends Pick<Contract, 'status' | 'expiresAt' | 'createdAt' | 'id'>>(
  contracts: readonly T[],
  now = new Date(),
): T | null {
  const oldestFirst = [...contracts].sort(
    (a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id),
  );
  for (const status of VIEWER_CONTRACT_ORDER) {
    const found = oldestFirst.find((contract) => visibleStatus(contract, now) === status);
    if (found) return found;
  }
  return oldestFirst.at(-1) ?? null;
}

/** Which contracts a listing shows: by visible status (EXPIRED is ACTIVE past its expiry), as a Prisma condition. */
function statusCondition(status: VisibleStatus | null | undefined, now: Date): P.ContractWhereInput {
  return status === 'EXPIRED'
    ? { status: 'ACTIVE', expiresAt: { lte: now } }
    : status === 'ACTIVE'
      ? { status: 'ACTIVE', OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] }
      : status
        ? { status }
        : {};
}

export interface ContractFilter {
  status?: VisibleStatus | null;
  /** A model slug. */
  model?: string | null;
}

export class ContractsService {
  constructor(
    private readonly prisma: Prisma,
    private readonly audit: AuditService,
    private readonly plans: PlansService,
    private readonly changes: ChangeFeed,
    private readonly upgrades: UpgradesService,
    private readonly events: EventOutbox,
    private readonly expiry: ContractExpiryNotices,
  ) {}

  /** `pin`: the version or alias calls naming no version are served (upgrades-service.ts pinFor). */
  async accept(actor: Actor, planId: string, pin?: string | null): Promise<Contract> {
    const consumerId = requireUserId(actor.principal);
    const plan = await this.plans.findVisible(actor, planId);
    const refused = acceptRefusal(actor.principal, plan, plan.model, []);
    if (refused) throw refused;
    const terms = termsOf(plan);
    const now = new Date();
    const active = !plan.requiresApproval;
    const created = await this.prisma.$transaction(async (tx) => {
      // One live contract per consumer and plan; the row lock on the plan serialises concurrent accepts.
      await tx.$queryRaw`SELECT id FROM license_plans WHERE id = ${plan.id}::uuid FOR UPDATE`;
      const live = await tx.contract.findMany({
        where: { planId: plan.id, consumerId, status: { in: LIVE_STATUSES } },
      });
      const conflict = acceptRefusal(actor.principal, plan, plan.model, live);
      if (conflict) throw conflict;
      const pinned = await this.upgrades.pinFor(tx, plan.model, plan.versions, pin);
      const contract = await tx.contract.create({
        data: {
          planId: plan.id,
          modelId: plan.modelId,
          consumerId,
          status: active ? 'ACTIVE' : 'PENDING',
          terms: terms as unknown as P.InputJsonObject,
          termsDigest: termsDigest(terms),
          planRevision: plan.revision,
          versionRange: plan.versions,
          pricePerPrediction: plan.pricePerPrediction,
          currency: plan.currency,
          predictionQuota: plan.predictionQuota,
          period: plan.period,
          rateLimitPerMinute: plan.rateLimitPerMinute,
          downloadAllowed: plan.downloadAllowed,
          durationDays: plan.durationDays,
          explanationsAllowed: plan.explanationsAllowed,
          pricePerExplanation: plan.pricePerExplanation,
          explanationQuotaUnits: plan.explanationQuotaUnits,
          upgradePolicy: plan.upgradePolicy,
          upgradeGraceDays: plan.upgradeGraceDays,
          ...pinned,
          periodStart: now,
          startsAt: active ? now : null,
          expiresAt: active && plan.durationDays ? new Date(now.getTime() + plan.durationDays * DAY_MS) : null,
        },
      });
      await this.audit.record(
        actor,
        {
          action: AuditAction.CONTRACT_CREATED,
          targetType: 'Contract',
          targetId: contract.id,
          details: {
            plan: plan.id,
            status: contract.status,
            pinnedAlias: pinned.pinnedAlias,
            pinnedVersion: pinned.pinnedVersionId,
          },
        },
        tx,
      );
      if (contract.status === 'PENDING') {
        await this.events.emit(tx, [
          {
            type: EventType.CONTRACT_REQUESTED,
            accountId: plan.model.ownerId,
            data: {
              contractId: contract.id,
              modelId: contract.modelId,
              planId: plan.id,
              consumerId,
              status: contract.status,
            },
          },
        ]);
      }
      if (contract.expiresAt) await this.expiry.schedule(tx, contract.id, contract.expiresAt);
      return contract;
    });
    this.events.wake();
    this.expiry.wake();
    // A refusal for want of a contract may have been cached.
    await this.changes.published([Change.contracts(consumerId, created.modelId)]);
    return created;
  }

  async transition(actor: Actor, id: string, transition: Transition, reason?: string): Promise<Contract> {
    const rule = TRANSITIONS[transition];
    const contract = await this.#find(actor, id);
    const notParty = partyRefusal(actor.principal, transition, contract, contract.model);
    if (notParty) throw notParty;
    const cleanReason = reason === undefined ? null : reason.normalize('NFKC').trim();
    if (cleanReason !== null && (cleanReason.length === 0 || cleanReason.length > 1000)) {
      throw new BadUserInputError('reason must be 1 to 1000 characters', 'reason');
    }
    const now = new Date();
    // The status is checked again by the conditional UPDATE below (a concurrent transition may come first).
    const notNow = stateRefusal(transition, contract, now);
    if (notNow) throw notNow;
    const data: P.ContractUpdateManyMutationInput = { status: rule.to, statusReason: cleanReason };
    if (transition === 'approve') {
      data.startsAt = now;
      data.periodStart = now;
      data.expiresAt = contract.durationDays ? new Date(now.getTime() + contract.durationDays * DAY_MS) : null;
    }
    const changed = await this.prisma.$transaction(async (tx) => {
      const { count } = await tx.contract.updateMany({ where: { id, status: { in: rule.from } }, data });
      if (count === 0)
        throw new BadUserInputError(`A ${contract.status} contract cannot be ${rule.to.toLowerCase()}`, 'id');
      await this.audit.record(
        actor,
        {
          action: rule.action as AuditAction,
          targetType: 'Contract',
          targetId: id,
          details: { from: contract.status, to: rule.to, reason: cleanReason },
        },
        tx,
      );
      const updated = await tx.contract.findUniqueOrThrow({ where: { id } });
      if (rule.event) {
        await this.events.emit(tx, [
          {
            type: rule.event,
            accountId: updated.consumerId,
            data: {
              contractId: id,
              ...consumerSubject(contract.model.visibility, updated.modelId, updated.planId),
              status: updated.status,
              reason: cleanReason,
            },
          },
        ]);
      }
      if (transition === 'approve' && updated.expiresAt) await this.expiry.schedule(tx, id, updated.expiresAt);
      return updated;
    });
    this.events.wake();
    this.expiry.wake();
    await this.changes.published([Change.contracts(changed.consumerId, changed.modelId)]);
    return changed;
  }

  mine(actor: Actor): Promise<Contract[]> {
    return this.prisma.contract.findMany({
      where: { consumerId: requireUserId(actor.principal) },
      orderBy: { createdAt: 'desc' },
    });
  }

  async forModel(actor: Actor, slug: string): Promise<Contract[]> {
    const model = await this.#managedModel(actor, slug);
    return this.prisma.contract.findMany({ where: { modelId: model.id }, orderBy: { createdAt: 'desc' } });
  }

  /** A model whose contracts the caller may read (NOT_FOUND otherwise); an admin's read of another's is audited. */
  async #managedModel(actor: Actor, slug: string): Promise<Model> {
    const model = await this.prisma.model.findUnique({ where: { slug } });
    if (!model || !canManage(actor.principal, model)) throw new NotFoundError('Model');
    if (isAdmin(actor.principal) && model.ownerId !== requireUserId(actor.principal)) {
      await this.audit.record(actor, {
        action: AuditAction.ADMIN_READ,
        targetType: 'Model',
        targetId: model.id,
        details: { read: 'contracts' },
      });
    }
    return model;
  }

  async all(actor: Actor, status: VisibleStatus | null | undefined): Promise<Contract[]> {
    await this.#recordAdminRead(actor);
    return this.prisma.contract.findMany({
      where: statusCondition(status, new Date()),
      orderBy: { createdAt: 'desc' },
    });
  }

  /** The caller's contracts, newest first, a page at a time. */
  mineConnection(
    actor: Actor,
    filter: ContractFilter | null | undefined,
    first: number,
    after: string | null | undefined,
  ) {
    const afterCursor = newestFirstPage(first, after);
    return this.#page({ consumerId: requireUserId(actor.principal) }, filter, first, afterCursor);
  }

  /** Contracts for a model the caller manages, newest first (`filter.model` is ignored: the model is given). */
  async forModelConnection(
    actor: Actor,
    slug: string,
    filter: ContractFilter | null | undefined,
    first: number,
    after: string | null | undefined,
  ) {
    const afterCursor = newestFirstPage(first, after);
    const model = await this.#managedModel(actor, slug);
    return this.#page({ modelId: model.id }, { status: filter?.status }, first, afterCursor);
  }

  /** Every contract, newest first (admins; the read is audited, as `contracts` is). */
  async allConnection(
    actor: Actor,
    filter: ContractFilter | null | undefined,
    first: number,
    after: string | null | undefined,
  ) {
    const afterCursor = newestFirstPage(first, after);
    await this.#recordAdminRead(actor);
    return this.#page({}, filter, first, afterCursor);
  }

  async #page(
    scope: P.ContractWhereInput,
    filter: ContractFilter | null | undefined,
    first: number,
    afterCursor: P.ContractWhereInput[],
  ) {
    const conditions: P.ContractWhereInput[] = [scope, statusCondition(filter?.status, new Date())];
    if (filter?.model != null) {
      const slug = cleanText(filter.model, 'filter.model', { max: 100, singleLine: true });
      const model = await this.prisma.model.findUnique({ where: { slug }, select: { id: true } });
      // An unknown slug matches nothing (and tells nothing about models the caller cannot see).
      if (!model) return { ...connectionOf<Contract>([], first), totalCount: 0 };
      conditions.push({ modelId: model.id });
    }
    const [rows, totalCount] = await Promise.all([
      this.prisma.contract.findMany({
        where: { AND: [...conditions, ...afterCursor] },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: first + 1,
      }),
      this.prisma.contract.count({ where: { AND: conditions } }),
    ]);
    return { ...connectionOf(rows, first), totalCount };
  }

  async #recordAdminRead(actor: Actor): Promise<void> {
    await this.audit.record(actor, {
      action: AuditAction.ADMIN_READ,
      targetType: 'Contract',
      details: { read: 'all contracts' },
    });
  }

  /** A contract the caller is party to (consumer, model owner) or administers. */
  async #find(actor: Actor, id: string): Promise<Contract & { model: Model }> {
    assertUuid(id, 'id');
    const contract = await this.prisma.contract.findUnique({ where: { id }, include: { model: true } });
    const userId = requireUserId(actor.principal);
    if (!contract || (contract.consumerId !== userId && !canManage(actor.principal, contract.model))) {
      throw new NotFoundError('Contract');
    }
    return contract;
  }

  /**
   * The caller's contract that allows downloading this version (ACTIVE, unexpired, covering it, with download
   * rights); FORBIDDEN otherwise, and for an ARCHIVED version (it no longer serves, as predict refuses it too).
   */
  async downloadContract(
    actor: Actor,
    modelId: string,
    version: Pick<ModelVersion, 'version' | 'status'>,
  ): Promise<string> {
    const consumerId = requireUserId(actor.principal);
    if (version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    const contracts = await this.prisma.contract.findMany({
      where: { consumerId, modelId, status: 'ACTIVE', downloadAllowed: true },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    const usable = contracts.find((c) => visibleStatus(c) === 'ACTIVE' && covers(c.versionRange, version.version));
    if (!usable)
      throw new ForbiddenError('No active licence of yours allows downloading this version', {
        reason: 'NO_DOWNLOAD_RIGHT',
      });
    return usable.id;
  }

  /** For billing statements: the contract if the caller may read it. */
  findReadable(actor: Actor, id: string) {
    return this.#find(actor, id);
  }
}
