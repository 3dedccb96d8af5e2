// Consumer-accepted version upgrades. A contract is pinned to an alias (`latest`, `stable`, …) or to an exact
// version, and is served its pinned version (predict-authorizer.ts) whatever the alias points at now. When an alias
// moves (setVersionAlias, or `latest` on publish), the contracts pinned to it react in the move's own transaction,
// as their frozen upgrade policy says: FOLLOW_ALIAS contracts move at once; PINNED ones are offered the new version
// (a pending upgrade and an `upgrade.available` event with the comparison) and keep theirs until the consumer
// accepts; FOLLOW_ALIAS_AFTER_GRACE ones are offered it too, and a job applies it when the grace days have passed,
// unless the consumer accepted or declined first, or the change is breaking (never applied without consent).
import semver from 'semver';
import { requireUserId, type Actor } from '../auth/principal.js';
import { AuditAction, type AuditEntry, type AuditService } from '../audit/audit-service.js';
import { Change, type ChangeFeed } from '../db/change-feed.js';
import type { Prisma } from '../db/database.js';
import { readVerifiedMetrics } from '../evaluation/evaluations-service.js';
import { EventType, type EventInput, type EventOutbox } from '../events/outbox.js';
import type { Contract, Model, ModelVersion, Prisma as P, UpgradePolicy } from '../generated/prisma/client.js';
import type { JobKind, JobQueue } from '../jobs/job-queue.js';
import type { EvaluationMetrics } from '../models/evaluation-metrics.js';
import { canManage } from '../models/model-policy.js';
import { latestOf, LATEST } from '../models/models-service.js';
import { compareSignatures, storedSignature, type SignatureCompatibility } from '../models/signature.js';
import { BadUserInputError, ConflictError, ForbiddenError, NotFoundError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { visibleStatus } from './contracts-service.js';
import { covers } from './terms.js';

/** A version's quality as a consumer weighs an upgrade: measured (verified) when published, else as stated. */
export interface VersionQuality {
  version: string;
  accuracy: number | null;
  macroF1: number | null;
  /** Measured by the marketplace (a published evaluation) rather than stated by the owner. */
  verified: boolean;
}

/** What changes for a consumer moving from one version to another. */
export interface VersionComparison extends SignatureCompatibility {
  metrics: { from: VersionQuality; to: VersionQuality };
}

export interface PendingUpgrade {
  version: ModelVersion;
  since: Date;
  appliesAt: Date | null;
  comparison: VersionComparison;
}

/** Where a new contract is pinned (acceptLicense). */
export interface Pin {
  pinnedAlias: string | null;
  pinnedVersionId: string | null;
}

/** Applies a FOLLOW_ALIAS_AFTER_GRACE upgrade when its grace period ends. */
export const UPGRADE_APPLY_JOB: JobKind = {
  name: 'contract-upgrade-apply',
  retryLimit: 10,
  retryDelaySeconds: 30,
  retryBackoff: true,
  expireInSeconds: 60,
};

/**
 * The options of a transaction that moves an alias (setVersionAlias; a publish has its own, longer ones). Its fan-out
 * is a handful of set-based statements over every live contract on the model, which may be thousands: well over
 * Prisma's 5 s default on a loaded database, so it gets the statement timeout's minute.
 */
export const ALIAS_MOVE_TRANSACTION = { maxWait: 10_000, timeout: 60_000 };

/** The alias a contract is pinned to when the consumer names none: the model's `stable` when it has one. */
const DEFAULT_PIN_ALIAS = 'stable';
const MAX_PIN_LENGTH = 256;
const LIVE_STATUSES = ['PENDING', 'ACTIVE', 'SUSPENDED'] as const;

interface LiveContract {
  id: string;
  consumer_id: string;
  version_range: string;
  upgrade_policy: UpgradePolicy;
  pinned_alias: string | null;
  pinned_version_id: string | null;
}

export class UpgradesService {
  constructor(
    private readonly prisma: Prisma,
    private readonly audit: AuditService,
    private readonly events: EventOutbox,
    private readonly jobs: JobQueue,
    private readonly changes: ChangeFeed,
  ) {}

  /** Declares the grace job and works it on this replica. */
  async start(): Promise<void> {
    await this.jobs.define(UPGRADE_APPLY_JOB);
    await this.jobs.work<{ contractId: string; versionId: string }>(UPGRADE_APPLY_JOB.name, 1, (data) =>
      this.#applyAfterGrace(data.contractId, data.versionId),
    );
  }

  /**
   * Where a new contract on `model` under the version range `range` is pinned: `pin` is an exact version (which the
   * range must cover) or an alias (`latest` included); without one, the model's `stable` alias if it has one, else
   * `latest`. An alias whose version the range does not cover (or a model with no version yet) pins no version:
   * calls are then served as the alias resolves, and the contract takes the alias's first covered version.
   */
  async pinFor(tx: P.TransactionClient, model: Model, range: string, pin: string | null | undefined): Promise<Pin> {
    if (pin != null && (pin.length > MAX_PIN_LENGTH || pin.trim().length === 0))
      throw new BadUserInputError('pin must be a version number or an alias', 'pin');
    // Shares the lock alias moves take exclusively: a move either sees this contract or happened before its pin.
    await tx.$queryRaw`SELECT id FROM models WHERE id = ${model.id}::uuid FOR SHARE`;
    const wanted = pin?.trim();
    if (wanted !== undefined && semver.valid(wanted)) {
      const version = await tx.modelVersion.findUnique({
        where: { modelId_version: { modelId: model.id, version: wanted } },
      });
      if (!version) throw new BadUserInputError(`${model.slug} has no version ${wanted}`, 'pin');
      if (version.status === 'ARCHIVED')
        throw new BadUserInputError(`Version ${wanted} is archived and no longer serves`, 'pin');
      if (!covers(range, version.version))
        throw new BadUserInputError(`The plan does not cover version ${wanted}`, 'pin');
      return { pinnedAlias: null, pinnedVersionId: version.id };
    }
    let alias = wanted?.toLowerCase();
    if (alias === undefined) {
      const stable = await tx.modelAlias.findUnique({
        where: { modelId_name: { modelId: model.id, name: DEFAULT_PIN_ALIAS } },
      });
      alias = stable ? DEFAULT_PIN_ALIAS : LATEST;
    }
    const target = await this.#aliasTarget(tx, model.id, alias);
    if (target === undefined) throw new BadUserInputError(`${model.slug} has no alias ${alias}`, 'pin');
    return {
      pinnedAlias: alias,
      pinnedVersionId: target && covers(range, target.version) ? target.id : null,
    };
  }

  /**
   * Serialises the moves of a model's aliases (and publishes, which move `latest`) in the caller's transaction, so
   * each move knows where the alias was. NO KEY UPDATE: calls inserting usage rows that reference the model go on.
   */
  async lockModel(tx: P.TransactionClient, modelId: string): Promise<void> {
    await tx.$queryRaw`SELECT id FROM models WHERE id = ${modelId}::uuid FOR NO KEY UPDATE`;
  }

  /** Where `latest` points now (in the caller's transaction). */
  async latest(tx: P.TransactionClient, modelId: string): Promise<ModelVersion | null> {
    return latestOf(await tx.modelVersion.findMany({ where: { modelId, status: { not: 'ARCHIVED' } } }));
  }

  /**
   * In the publish's transaction, after the version was written (and lockModel, before it, read `latestBefore`):
   * tells consumers of the model (`version.published`), and moves `latest` when the new version became it.
   * Resolves with the changes to publish once committed.
   */
  async versionPublished(
    tx: P.TransactionClient,
    actor: Actor,
    model: Model,
    version: ModelVersion,
    latestBefore: ModelVersion | null,
  ): Promise<string[]> {
    const live = await this.#liveContracts(tx, model.id);
    const data = { model: model.slug, modelId: model.id, version: version.version, versionId: version.id };
    await this.events.emit(tx, this.#toEachConsumer(model, live, EventType.VERSION_PUBLISHED, data));
    const latest = await this.latest(tx, model.id);
    if (latest?.id !== version.id) return [];
    return this.aliasMoved(tx, actor, model, LATEST, latestBefore, version, live);
  }

  /**
   * In the transaction that moved `alias` of `model` from `from` to `to`: `alias.moved` to every consumer with a
   * live contract on the model, and the contracts pinned to the alias react by their policy. Resolves with the
   * changes to publish once committed.
   */
  async aliasMoved(
    tx: P.TransactionClient,
    actor: Actor,
    model: Model,
    alias: string,
    from: ModelVersion | null,
    to: ModelVersion,
    live?: LiveContract[],
  ): Promise<string[]> {
    if (from?.id === to.id) return [];
    const contracts = live ?? (await this.#liveContracts(tx, model.id));
    const moved = { model: model.slug, modelId: model.id, alias, from: from?.version ?? null, to: to.version };
    await this.events.emit(tx, this.#toEachConsumer(model, contracts, EventType.ALIAS_MOVED, moved));
    // A version outside a contract's range is not offered to it: the contract could not be served it. Thousands of
    // contracts may share a few ranges and versions: each is weighed once (Maps and Sets, no per-contract scans).
    const rangeCovers = new Map<string, boolean>();
    const coversTo = (range: string) => {
      if (!rangeCovers.has(range)) rangeCovers.set(range, covers(range, to.version));
      return rangeCovers.get(range)!;
    };
    const follow: LiveContract[] = [];
    const offer = new Map<string, LiveContract>();
    for (const c of contracts) {
      if (c.pinned_alias !== alias || !coversTo(c.version_range)) continue;
      if (c.pinned_version_id === null || c.pinned_version_id === to.id || c.upgrade_policy === 'FOLLOW_ALIAS')
        follow.push(c);
      else offer.set(c.id, c);
    }
    const audits: AuditEntry[] = [];
    if (follow.length > 0) {
      await tx.$executeRaw`
        UPDATE contracts SET pinned_version_id = ${to.id}::uuid, pending_version_id = NULL, pending_since = NULL,
                             pending_applies_at = NULL
        WHERE id = ANY(${follow.map((c) => c.id)}::uuid[])`;
      for (const c of follow.filter((c) => c.pinned_version_id !== to.id)) {
        audits.push(switched(c.id, c.pinned_version_id, to.id, `followed ${alias}`));
      }
    }
    const graceJobs: { data: { contractId: string; versionId: string }; startAfter: Date }[] = [];
    const comparisons = new Map<string, VersionComparison>();
    for (const c of offer.values()) {
      const fromId = c.pinned_version_id!;
      if (!comparisons.has(fromId)) comparisons.set(fromId, await this.compare(tx, fromId, to.id));
    }
    const breaking = [...offer.values()]
      .filter((c) => comparisons.get(c.pinned_version_id!)!.breaking)
      .map((c) => c.id);
    const offered =
      offer.size === 0
        ? []
        : await tx.$queryRaw<{ id: string; pending_applies_at: Date | null }[]>`
            UPDATE contracts
            SET pending_version_id = ${to.id}::uuid, pending_since = now(),
                pending_applies_at = CASE
                  WHEN upgrade_policy = 'FOLLOW_ALIAS_AFTER_GRACE' AND NOT (id = ANY(${breaking}::uuid[]))
                  THEN now() + upgrade_grace_days * interval '1 day' END
            WHERE id = ANY(${[...offer.keys()]}::uuid[])
            RETURNING id, pending_applies_at`;
    // One upgrade.available per consumer, listing its offered contracts (a consumer may hold thousands on a model).
    const offersTo = new Map<string, { contract: string; from: string; appliesAt: string | null }[]>();
    for (const { id, pending_applies_at: appliesAt } of offered) {
      const c = offer.get(id)!;
      const comparison = comparisons.get(c.pinned_version_id!)!;
      const listed = offersTo.get(c.consumer_id) ?? [];
      offersTo.set(c.consumer_id, listed);
      // The contract's own version, which may be older than where the alias was (earlier offers not taken).
      listed.push({ contract: id, from: comparison.metrics.from.version, appliesAt: appliesAt?.toISOString() ?? null });
      audits.push({
        action: AuditAction.CONTRACT_UPGRADE_OFFERED,
        targetType: 'Contract',
        targetId: id,
        details: {
          from: c.pinned_version_id,
          to: to.id,
          alias,
          breaking: comparison.breaking,
          appliesAt: appliesAt?.toISOString() ?? null,
        },
      });
      if (appliesAt) graceJobs.push({ data: { contractId: id, versionId: to.id }, startAfter: appliesAt });
    }
    const byFromVersion = new Map([...comparisons.values()].map((c) => [c.metrics.from.version, c]));
    // As #toEachConsumer: a PRIVATE model's consumers are not told (the offers stay on the contracts).
    const events: EventInput[] =
      model.visibility !== 'PUBLIC'
        ? []
        : [...offersTo].map(([accountId, listed]) => ({
            type: EventType.UPGRADE_AVAILABLE,
            accountId,
            data: {
              ...moved,
              toVersionId: to.id,
              contracts: listed,
              // One comparison per version the consumer's contracts are on, keyed by that version's number.
              comparisons: Object.fromEntries(
                [...new Set(listed.map((l) => l.from))].map((version) => [version, byFromVersion.get(version)]),
              ),
            },
          }));
    await this.jobs.sendMany(UPGRADE_APPLY_JOB.name, graceJobs, { client: tx });
    await this.events.emit(tx, events);
    await this.audit.recordMany(actor, audits, tx);
    return [...new Set(follow.map((c) => c.consumer_id))].map((consumer) => Change.contracts(consumer, model.id));
  }

  /**
   * In the archive's transaction (after lockModel), once the version's aliases were removed: offers of the version
   * are withdrawn (an archived version never serves, so it is neither accepted nor applied after a grace period),
   * and consumers are told each removed alias moved to nothing (`alias.moved` with `to: null`).
   */
  async versionArchived(
    tx: P.TransactionClient,
    actor: Actor,
    model: Model,
    version: ModelVersion,
    removedAliases: string[],
  ): Promise<void> {
    const withdrawn = await tx.$queryRaw<{ id: string; pinned_version_id: string | null }[]>`
      UPDATE contracts SET pending_version_id = NULL, pending_since = NULL, pending_applies_at = NULL
      WHERE model_id = ${model.id}::uuid AND pending_version_id = ${version.id}::uuid
      RETURNING id, pinned_version_id`;
    await this.audit.recordMany(
      actor,
      withdrawn.map((c) => ({
        action: AuditAction.CONTRACT_UPGRADE_WITHDRAWN,
        targetType: 'Contract',
        targetId: c.id,
        details: { kept: c.pinned_version_id, withdrawn: version.id, reason: 'version archived' },
      })),
      tx,
    );
    if (removedAliases.length === 0) return;
    const live = await this.#liveContracts(tx, model.id);
    for (const alias of removedAliases) {
      const removed = { model: model.slug, modelId: model.id, alias, from: version.version, to: null };
      await this.events.emit(tx, this.#toEachConsumer(model, live, EventType.ALIAS_MOVED, removed));
    }
  }

  /** After the transaction that called versionPublished or aliasMoved committed. */
  async committed(changes: string[]): Promise<void> {
    this.events.wake();
    this.jobs.wake(UPGRADE_APPLY_JOB.name);
    if (changes.length > 0) await this.changes.published([...new Set(changes)]);
  }

  /**
   * The consumer moves its contract to `version` (a version number the contract's range covers that still serves):
   * the pending upgrade, or any other it tried. Calls naming no version are served it from the next call on.
   */
  async accept(actor: Actor, contractId: string, version: string): Promise<Contract> {
    const contract = await this.#ownContract(actor, contractId);
    const wanted = version.trim();
    if (wanted.length > MAX_PIN_LENGTH || !semver.valid(wanted))
      throw new BadUserInputError('version must be a version number such as 1.2.0', 'version');
    const target = await this.prisma.modelVersion.findUnique({
      where: { modelId_version: { modelId: contract.modelId, version: wanted } },
    });
    if (!target) throw new NotFoundError(`Version ${wanted}`);
    if (target.status === 'ARCHIVED')
      throw new BadUserInputError(`Version ${wanted} is archived and no longer serves`, 'version');
    if (!covers(contract.versionRange, target.version))
      throw new BadUserInputError(`Your contract does not cover version ${wanted}`, 'version');
    const updated = await this.prisma.$transaction(async (tx) => {
      // Checked again under a share lock: an archive that committed since the read above wins, one after it waits.
      const [locked] = await tx.$queryRaw<{ status: string }[]>`
        SELECT status FROM model_versions WHERE id = ${target.id}::uuid FOR SHARE`;
      if (locked!.status === 'ARCHIVED')
        throw new BadUserInputError(`Version ${wanted} is archived and no longer serves`, 'version');
      const { count } = await tx.contract.updateMany({
        where: { id: contract.id, pinnedVersionId: contract.pinnedVersionId, status: { in: [...LIVE_STATUSES] } },
        data: { pinnedVersionId: target.id, pendingVersionId: null, pendingSince: null, pendingAppliesAt: null },
      });
      if (count === 0) throw new ConflictError('The contract changed meanwhile; read it again and retry');
      await this.audit.record(actor, switched(contract.id, contract.pinnedVersionId, target.id, 'accepted'), tx);
      return tx.contract.findUniqueOrThrow({ where: { id: contract.id } });
    });
    await this.changes.published([Change.contracts(updated.consumerId, updated.modelId)]);
    return updated;
  }

  /** The consumer keeps its version: the pending upgrade (and its grace application) is dropped. */
  async decline(actor: Actor, contractId: string): Promise<Contract> {
    const contract = await this.#ownContract(actor, contractId);
    if (!contract.pendingVersionId) throw new BadUserInputError('The contract has no pending upgrade', 'contract');
    return this.prisma.$transaction(async (tx) => {
      const { count } = await tx.contract.updateMany({
        where: { id: contract.id, pendingVersionId: contract.pendingVersionId },
        data: { pendingVersionId: null, pendingSince: null, pendingAppliesAt: null },
      });
      if (count === 0) throw new ConflictError('The contract changed meanwhile; read it again and retry');
      await this.audit.record(
        actor,
        {
          action: AuditAction.CONTRACT_UPGRADE_DECLINED,
          targetType: 'Contract',
          targetId: contract.id,
          details: { kept: contract.pinnedVersionId, declined: contract.pendingVersionId },
        },
        tx,
      );
      return tx.contract.findUniqueOrThrow({ where: { id: contract.id } });
    });
  }

  /** The contract's pending upgrade with its comparison, or null. */
  async pendingUpgrade(contract: Contract): Promise<PendingUpgrade | null> {
    if (!contract.pendingVersionId || !contract.pendingSince) return null;
    const version = await this.prisma.modelVersion.findUniqueOrThrow({ where: { id: contract.pendingVersionId } });
    return {
      version,
      since: contract.pendingSince,
      appliesAt: contract.pendingAppliesAt,
      comparison: await this.compare(this.prisma, contract.pinnedVersionId!, version.id),
    };
  }

  /** Signature compatibility and quality of two versions, as `upgrade.available` carries it. */
  async compare(tx: P.TransactionClient | Prisma, fromId: string, toId: string): Promise<VersionComparison> {
    const versions = await tx.modelVersion.findMany({ where: { id: { in: [fromId, toId] } } });
    const from = versions.find((v) => v.id === fromId)!;
    const to = versions.find((v) => v.id === toId)!;
    const [fromVerified, toVerified] = await readVerifiedMetrics(tx, [fromId, toId]);
    const quality = (version: ModelVersion, verified: typeof fromVerified): VersionQuality => {
      if (verified) return { version: version.version, ...pick(verified), verified: true };
      const stated = version.metrics as EvaluationMetrics | null;
      return { version: version.version, ...pick(stated ?? {}), verified: false };
    };
    return {
      ...compareSignatures(storedSignature(from.signature), storedSignature(to.signature)),
      metrics: { from: quality(from, fromVerified), to: quality(to, toVerified) },
    };
  }

  /**
   * Applies every grace upgrade that is due (its job missing, e.g. one that exhausted its retries): each through
   * the job's own guarded statement, so a sweep racing a job or another replica's sweep applies it once.
   */
  async applyDue(): Promise<void> {
    const due = await this.prisma.$queryRaw<{ id: string; pending_version_id: string }[]>`
      SELECT id, pending_version_id FROM contracts
      WHERE pending_applies_at <= now() AND status IN ('PENDING', 'ACTIVE', 'SUSPENDED')`;
    for (const c of due) await this.#applyAfterGrace(c.id, c.pending_version_id);
  }

  async #applyAfterGrace(contractId: string, versionId: string): Promise<void> {
    const changes = await this.prisma.$transaction(async (tx) => {
      // Only the upgrade this job was sent for, still pending and due: an accept, a decline or a later offer won.
      const rows = await tx.$queryRaw<{ consumer_id: string; model_id: string; from_id: string | null }[]>`
        UPDATE contracts c
        SET pinned_version_id = c.pending_version_id, pending_version_id = NULL, pending_since = NULL,
            pending_applies_at = NULL
        FROM (SELECT id, pinned_version_id FROM contracts WHERE id = ${contractId}::uuid FOR NO KEY UPDATE) before
        WHERE c.id = before.id AND c.pending_version_id = ${versionId}::uuid AND c.pending_applies_at <= now()
          AND c.status IN ('PENDING', 'ACTIVE', 'SUSPENDED')
          AND EXISTS (SELECT 1 FROM model_versions v WHERE v.id = c.pending_version_id AND v.status <> 'ARCHIVED')
        RETURNING c.consumer_id, c.model_id, before.pinned_version_id AS from_id`;
      const applied = rows[0];
      if (!applied) return [];
      await this.audit.record(undefined, switched(contractId, applied.from_id, versionId, 'grace period ended'), tx);
      return [Change.contracts(applied.consumer_id, applied.model_id)];
    });
    if (changes.length > 0) await this.changes.published(changes);
  }

  /** A live contract of the caller's own; the model's owner is told only consumers decide, strangers NOT_FOUND. */
  async #ownContract(actor: Actor, id: string): Promise<Contract> {
    assertUuid(id, 'contract');
    const userId = requireUserId(actor.principal);
    const contract = await this.prisma.contract.findUnique({ where: { id }, include: { model: true } });
    if (!contract || (contract.consumerId !== userId && !canManage(actor.principal, contract.model)))
      throw new NotFoundError('Contract');
    if (contract.consumerId !== userId)
      throw new ForbiddenError('Only the consumer decides which version its contract is served');
    const status = visibleStatus(contract);
    if (!(LIVE_STATUSES as readonly string[]).includes(status))
      throw new BadUserInputError(`A ${status} contract is not served any version`, 'contract');
    return contract;
  }

  /** The version an alias points at: null for `latest` of a model with no serving version, undefined for none. */
  async #aliasTarget(
    tx: P.TransactionClient,
    modelId: string,
    alias: string,
  ): Promise<ModelVersion | null | undefined> {
    if (alias === LATEST) return this.latest(tx, modelId);
    const stored = await tx.modelAlias.findUnique({
      where: { modelId_name: { modelId, name: alias } },
      include: { version: true },
    });
    return stored?.version;
  }

  /**
   * Live (not ended, not expired) contracts on the model, locked against concurrent accepts and declines. In id
   * order, as metering's reservations lock contracts (no deadlock with them); NO KEY UPDATE, so usage records
   * referencing a contract are still written meanwhile.
   */
  #liveContracts(tx: P.TransactionClient, modelId: string): Promise<LiveContract[]> {
    return tx.$queryRaw<LiveContract[]>`
      SELECT id, consumer_id, version_range, upgrade_policy, pinned_alias, pinned_version_id
      FROM contracts
      WHERE model_id = ${modelId}::uuid AND status IN ('PENDING', 'ACTIVE', 'SUSPENDED')
        AND (expires_at IS NULL OR expires_at > now())
      ORDER BY id
      FOR NO KEY UPDATE`;
  }

  /** One event per consumer holding a live contract (a consumer with two contracts hears it once). */
  /** Consumers are told of a model only while it is PUBLIC: a PRIVATE model serves (and shows) its owner only. */
  #toEachConsumer(
    model: Pick<Model, 'visibility'>,
    contracts: LiveContract[],
    type: EventType,
    data: Record<string, unknown>,
  ): EventInput[] {
    if (model.visibility !== 'PUBLIC') return [];
    return [...new Set(contracts.map((c) => c.consumer_id))].map((accountId) => ({ type, accountId, data }));
  }
}

function switched(contractId: string, from: string | null, to: string, reason: string): AuditEntry {
  return {
    action: AuditAction.CONTRACT_VERSION_SWITCHED,
    targetType: 'Contract',
    targetId: contractId,
    details: { from, to, reason },
  };
}

function pick(metrics: { accuracy?: number | null; macroF1?: number | null }) {
  return { accuracy: metrics.accuracy ?? null, macroF1: metrics.macroF1 ?? null };
}
