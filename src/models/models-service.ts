// Models, immutable versions and aliases: the owner's side of the marketplace.
import { randomUUID } from 'node:crypto';
import semver from 'semver';
import { requireUserId, type Actor } from '../auth/principal.js';
import { AuditAction, type AuditService, type AuditEntry } from '../audit/audit-service.js';
import { Change, type ChangeFeed } from '../db/change-feed.js';
import type { Prisma } from '../db/database.js';
import { isUniqueViolation } from '../db/errors.js';
import { assertPageSize, connectionOf, decodeTimeCursor, newestFirstPage } from '../server/cursors.js';
import { assertUuid } from '../server/ids.js';
import { cleanText } from '../server/text.js';
import type {
  Model,
  ModelTask,
  ModelVersion,
  Prisma as P,
  VersionStatus,
  Visibility,
} from '../generated/prisma/client.js';
import type { Logger } from '../server/logger.js';
import { BadUserInputError, ConflictError, NotFoundError } from '../server/errors.js';
import { OPTED_OUT_MARK, type EvaluationData, type WatermarkService } from '../watermark/watermark-service.js';
import type { ArtifactService } from './artifact-service.js';
import { parseEvaluationMetrics, type EvaluationMetrics } from './evaluation-metrics.js';
import { assertCanManage, canView, isAdmin } from './model-policy.js';
import type { InputEncoder } from '../predictions/input-encoding.js';
import { isNamed, storedSignature, resolveSignature, type Signature } from './signature.js';
import { BLOB_TRANSACTION } from './artifact-storage.js';
import type { DerivedVariant, VariantStore } from './variants.js';
import type { OptimizationService } from '../lifecycle/optimization-service.js';
import { DEFAULT_MAX_ACCURACY_DROP } from '../lifecycle/optimization-report.js';
import { parseOptimizationOptions } from '../lifecycle/optimizer.js';
import { ALIAS_MOVE_TRANSACTION, type UpgradesService } from '../licensing/upgrades-service.js';

export interface ModelCardInput {
  intendedUse?: string | null;
  trainingData?: string | null;
  limitations?: string | null;
  licenseSummary?: string | null;
}

export interface CreateModelInput {
  slug: string;
  name: string;
  description?: string | null;
  task: ModelTask;
  tags?: string[] | null;
  visibility: Visibility;
  card?: ModelCardInput | null;
}

export interface UpdateModelInput {
  name?: string | null;
  description?: string | null;
  tags?: string[] | null;
  visibility?: Visibility | null;
  card?: ModelCardInput | null;
}

export interface PublishVersionInput {
  model: string;
  version: string;
  artifactId: string;
  signature?: unknown;
  labels?: string[] | null;
  changelog?: string | null;
  card?: ModelCardInput | null;
  metrics?: EvaluationMetrics | null;
  /** false: publish without the owner mark (recorded on the version). */
  watermark?: boolean | null;
  /** Labelled examples to measure the mark's cost on. */
  evaluation?: { inputs: unknown; labels?: number[] | null } | null;
}

/** A new version, validated and with its variants derived: what commitVersion records. */
export interface VersionDraft {
  id: string;
  model: Model;
  /** A version number newVersionNumber accepted. */
  version: string;
  /** The upload (for an optimised version, its parent's: the unmarked original that marks are read against). */
  artifactId: string;
  signature: Signature;
  labels: string[];
  changelog: string;
  card: P.InputJsonObject;
  metrics?: EvaluationMetrics;
  /** The parent of an optimised version. */
  derivedFromId?: string;
}

export interface OptimizeVersionInput {
  model: string;
  /** The parent: a version number or alias. */
  version: string;
  newVersion: string;
  quantize?: string | null;
  pruneSparsity?: number | null;
  /** Accuracy points (0 to 100) the derived version may lose on the examples; 1 when omitted. */
  maxAccuracyDrop?: number | null;
  changelog?: string | null;
  evaluation?: { inputs: unknown; labels?: number[] | null } | null;
}

export interface ModelFilter {
  search?: string | null;
  task?: ModelTask | null;
  tag?: string | null;
  owner?: string | null;
}

export const LATEST = 'latest';
const SLUG = /^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){2,63}$/;
const TAG = /^[a-z0-9][a-z0-9+.-]{0,31}$/;
const ALIAS = /^[a-z][a-z0-9-]{0,31}$/;
const MAX_TAGS = 20;
const MAX_TEXT = 5000;
// Evaluation examples are run at publish but never answered, so the per-call output budget does not apply.
const EVALUATION_LIMITS = { maxInstances: 10_000, maxStringLength: 100_000, maxOutputValues: Infinity };

function text(value: string | null | undefined, field: string, max: number, required = false): string | undefined {
  if (value === undefined || value === null) {
    if (required) throw new BadUserInputError(`${field} is required`, field);
    return undefined;
  }
  return cleanText(value, field, { max, min: required ? 1 : 0 });
}

function cleanTags(tags: string[] | null | undefined, field: string): string[] | undefined {
  if (!tags) return undefined;
  const cleaned = [...new Set(tags.map((t) => t.trim().toLowerCase()))];
  if (cleaned.length > MAX_TAGS) throw new BadUserInputError(`At most ${MAX_TAGS} tags`, field);
  const badTag = cleaned.find((t) => !TAG.test(t));
  if (badTag !== undefined)
    throw new BadUserInputError(`Invalid tag "${badTag}": lower-case letters, digits, + . -`, field);
  return cleaned;
}

function cleanCard(card: ModelCardInput | null | undefined, field: string): P.InputJsonObject | undefined {
  if (!card) return undefined;
  const entries = Object.entries(card)
    .map(([key, value]) => [key, text(value, `${field}.${key}`, MAX_TEXT)] as const)
    .filter(([, value]) => value !== undefined && value !== '');
  return Object.fromEntries(entries);
}

/** The owner's accuracy budget in points (0 to 100, default 1) as the fraction OptimizationService takes. */
function accuracyPointsAsFraction(points: number | null | undefined): number {
  if (points === null || points === undefined) return DEFAULT_MAX_ACCURACY_DROP;
  if (!Number.isFinite(points) || points < 0 || points > 100) {
    throw new BadUserInputError(
      `maxAccuracyDrop must be accuracy points between 0 and 100 (1 is one point); got ${String(points)}`,
      'input.maxAccuracyDrop',
    );
  }
  return points / 100;
}

/** Semver precedence, highest first. A model has tens of versions, so sorting here is cheap. */
export const highestFirst = (versions: ModelVersion[]) =>
  versions.sort((a, b) => semver.rcompare(a.version, b.version));

/**
 * A page of a model's versions (all of them, highest first, as `versions` lists them), of one status when given.
 * The cursor names the last version shown, so a page goes on below its number even if that version's status
 * changed since.
 */
export function versionsPage(
  all: ModelVersion[],
  status: VersionStatus | null | undefined,
  first: number,
  after: string | null | undefined,
) {
  assertPageSize(first);
  const matching = status ? all.filter((version) => version.status === status) : all;
  let start = 0;
  if (after) {
    const { id } = decodeTimeCursor(after);
    const last = all.find((version) => version.id === id);
    // A cursor of another model's versions, or of another listing.
    if (!last) throw new BadUserInputError('Invalid cursor', 'after');
    const below = matching.findIndex((version) => semver.rcompare(version.version, last.version) > 0);
    start = below === -1 ? matching.length : below;
  }
  return { ...connectionOf(matching.slice(start, start + first + 1), first), totalCount: matching.length };
}

/** What `latest` points at among a model's serving versions: the highest release, else the highest prerelease. */
export function latestOf(serving: ModelVersion[]): ModelVersion | null {
  const sorted = highestFirst(serving);
  return sorted.find((v) => semver.prerelease(v.version) === null) ?? sorted[0] ?? null;
}

export class ModelsService {
  constructor(
    private readonly prisma: Prisma,
    private readonly changes: ChangeFeed,
    private readonly audit: AuditService,
    private readonly artifacts: ArtifactService,
    private readonly variants: VariantStore,
    private readonly watermarks: WatermarkService,
    private readonly encoder: InputEncoder,
    private readonly optimizations: OptimizationService,
    private readonly upgrades: UpgradesService,
    private readonly logger: Logger,
  ) {}

  async create(actor: Actor, input: CreateModelInput): Promise<Model> {
    const ownerId = requireUserId(actor.principal);
    const slug = input.slug.trim();
    if (!SLUG.test(slug)) {
      throw new BadUserInputError(
        'slug must be 3 to 64 characters: lower-case letters, digits and single hyphens, starting with a letter',
        'input.slug',
      );
    }
    const data = {
      slug,
      name: text(input.name, 'input.name', 100, true)!,
      description: text(input.description, 'input.description', MAX_TEXT) ?? '',
      task: input.task,
      tags: cleanTags(input.tags, 'input.tags') ?? [],
      visibility: input.visibility,
      card: cleanCard(input.card, 'input.card') ?? {},
      ownerId,
    };
    let model: Model;
    try {
      model = await this.prisma.$transaction(async (tx) => {
        const created = await tx.model.create({ data });
        await this.audit.record(
          actor,
          { action: AuditAction.MODEL_CREATED, targetType: 'Model', targetId: created.id, details: { slug } },
          tx,
        );
        return created;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictError(`A model with slug "${slug}" already exists`);
      throw error;
    }
    // A predict that found no model under this slug may have been cached.
    await this.#catalogChanged(model.id);
    return model;
  }

  async update(actor: Actor, slug: string, input: UpdateModelInput): Promise<Model> {
    const model = await this.prisma.model.findUnique({ where: { slug } });
    assertCanManage(actor.principal, model);
    const data: P.ModelUpdateInput = {
      name: input.name == null ? undefined : text(input.name, 'input.name', 100, true),
      description: text(input.description, 'input.description', MAX_TEXT),
      tags: cleanTags(input.tags, 'input.tags'),
      visibility: input.visibility ?? undefined,
      card: cleanCard(input.card, 'input.card'),
    };
    const updated = await this.prisma.$transaction(async (tx) => {
      const changed = await tx.model.update({ where: { slug }, data });
      await this.audit.record(
        actor,
        {
          action: AuditAction.MODEL_UPDATED,
          targetType: 'Model',
          targetId: changed.id,
          details: { fields: Object.keys(input) },
        },
        tx,
      );
      return changed;
    });
    await this.#catalogChanged(updated.id);
    return updated;
  }

  /** After anything that changes what a slug and version reference resolve to (the serving catalog). */
  #catalogChanged(modelId: string): Promise<void> {
    return this.changes.published([Change.catalog(modelId)]);
  }

  findBySlug(slug: string): Promise<Model | null> {
    return this.prisma.model.findUnique({ where: { slug } });
  }

  /** The model if the caller may see it. */
  async findVisible(actor: Actor, slug: string): Promise<Model | null> {
    const model = await this.findBySlug(slug);
    return model && canView(actor.principal, model) ? model : null;
  }

  async list(actor: Actor, filter: ModelFilter | null | undefined, first: number, after: string | null | undefined) {
    const afterCursor = newestFirstPage(first, after);
    const principal = actor.principal;
    const conditions: P.ModelWhereInput[] = [];
    if (!isAdmin(principal)) {
      conditions.push({
        OR: [{ visibility: 'PUBLIC' }, ...(principal.kind === 'anonymous' ? [] : [{ ownerId: principal.userId }])],
      });
    }
    if (filter?.task) conditions.push({ task: filter.task });
    if (filter?.tag) conditions.push({ tags: { has: filter.tag.trim().toLowerCase() } });
    if (filter?.owner) {
      assertUuid(filter.owner, 'filter.owner');
      conditions.push({ ownerId: filter.owner });
    }
    const words = (filter?.search ?? '').trim().split(/\s+/).filter(Boolean).slice(0, 10);
    for (const word of words) {
      conditions.push({
        OR: [
          { slug: { contains: word, mode: 'insensitive' } },
          { name: { contains: word, mode: 'insensitive' } },
          { description: { contains: word, mode: 'insensitive' } },
        ],
      });
    }
    const rows = await this.prisma.model.findMany({
      where: { AND: [...conditions, ...afterCursor] },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: first + 1,
    });
    return connectionOf(rows, first);
  }

  /**
   * Publishing is one pipeline: validate (the version number, the upload, its signature) → derive and measure
   * (the owner mark and its cost) → store and commit (commitVersion: blobs, version, variants and audit in one
   * transaction). optimizeModelVersion runs the same steps with its own derivation.
   */
  async publishVersion(actor: Actor, input: PublishVersionInput): Promise<ModelVersion> {
    const { model, version } = await this.newVersionNumber(actor, input.model, input.version, 'input.version');
    const labels = input.labels ?? undefined;
    if (labels) {
      if (labels.some((l) => l.trim().length === 0 || l.length > 200)) {
        throw new BadUserInputError('labels must be 1 to 200 characters each', 'input.labels');
      }
      if (new Set(labels).size !== labels.length)
        throw new BadUserInputError('labels must be distinct', 'input.labels');
    }
    const artifact = await this.artifacts.findUsable(actor, input.artifactId);
    const inspected = await this.artifacts.inspect(artifact.sha256);
    const signature = resolveSignature(inspected, input.signature, labels, {
      maxOutputValues: this.encoder.maxOutputValues,
    });
    const finalLabels =
      !isNamed(signature) && signature.output.kind === 'classification' ? signature.output.labels : [];
    const draft: VersionDraft = {
      id: randomUUID(),
      model,
      version,
      artifactId: artifact.id,
      signature,
      labels: finalLabels,
      changelog: text(input.changelog, 'input.changelog', MAX_TEXT) ?? '',
      card: cleanCard(input.card, 'input.card') ?? {},
      metrics: input.metrics ? parseEvaluationMetrics(input.metrics, finalLabels) : undefined,
    };
    const ownerMark =
      input.watermark === false
        ? OPTED_OUT_MARK
        : await this.watermarks.markForPublish(
            draft.id,
            artifact.sha256,
            signature,
            await this.#evaluation(input.evaluation, signature),
          );
    return this.commitVersion(actor, draft, [ownerMark], {
      action: AuditAction.VERSION_PUBLISHED,
      details: { model: model.slug, version, sha256: artifact.sha256 },
    });
  }

  /**
   * Publishes an optimised (quantised and/or pruned) copy of a version as a new version, through the same
   * pipeline: validate → derive and measure (OptimizationService: accuracy budget, owner mark) → commit the
   * version with its served QUANTIZED or PRUNED variant, its blob and the audit event in one transaction.
   * The new version keeps its parent's upload (what marks are read against), signature, labels and card;
   * the parent's self-reported metrics are not carried over (they were measured on other weights).
   */
  async optimizeVersion(actor: Actor, input: OptimizeVersionInput): Promise<ModelVersion> {
    const { model, version } = await this.newVersionNumber(actor, input.model, input.newVersion, 'input.newVersion');
    const parent = await this.resolveVersion(model.id, input.version);
    if (!parent) throw new NotFoundError('Version');
    // An archived version no longer serves: deriving would publish its weights again.
    if (parent.status === 'ARCHIVED')
      throw new BadUserInputError(
        `Version ${parent.version} is archived: optimise a version that serves`,
        'input.version',
      );
    // Cheap checks before the examples are encoded; OptimizationService checks the options again.
    const params = parseOptimizationOptions(input);
    const maxAccuracyDrop = accuracyPointsAsFraction(input.maxAccuracyDrop);
    const signature = storedSignature(parent.signature);
    // The optimisation is judged by accuracy on labelled examples: only classifiers have them.
    if (isNamed(signature) || signature.output.kind !== 'classification') {
      throw new BadUserInputError(
        'Only versions of one input and a classification output can be optimised: the optimisation is measured by accuracy on labelled examples',
        'input.version',
      );
    }
    if (!input.evaluation?.labels) {
      // Publishing measures with the examples and keeps none of them, so each optimisation brings its own.
      throw new BadUserInputError(
        'evaluation (inputs with their labels) is required: an optimisation is measured on labelled examples, and the examples a version was published with are not kept',
        input.evaluation ? 'input.evaluation.labels' : 'input.evaluation',
      );
    }
    const evaluation = (await this.#evaluation(input.evaluation, signature))!;
    // The owner mark lives on the first version of a lineage (derived versions carry it, keyed to that version).
    const { markedVersionId, mark } = await this.variants.ownerMarkOf(parent);
    const derived = await this.optimizations.derive({
      versionId: markedVersionId,
      parent: this.artifacts.modelRef(await this.variants.servedSha256(parent)),
      originalSha256: await this.artifacts.sha256Of(parent.artifactId),
      ownerMark: mark,
      evaluation: { tensor: evaluation.tensor, labels: evaluation.labels! },
      ...params,
      maxAccuracyDrop,
    });
    const draft: VersionDraft = {
      id: randomUUID(),
      model,
      version,
      artifactId: parent.artifactId,
      signature,
      labels: parent.labels,
      changelog: text(input.changelog, 'input.changelog', MAX_TEXT) ?? '',
      card: parent.card as P.InputJsonObject,
      derivedFromId: parent.id,
    };
    const variant: DerivedVariant = {
      // Quantised and pruned together is QUANTIZED (its params say both).
      kind: params.quantize ? 'QUANTIZED' : 'PRUNED',
      params: { ...derived.params },
      artifact: derived.stored,
      sha256: derived.sha256,
      report: derived.report as unknown as P.InputJsonObject,
      served: true,
    };
    return this.commitVersion(actor, draft, [variant], {
      action: AuditAction.VERSION_PUBLISHED,
      details: {
        model: model.slug,
        version,
        derivedFrom: parent.version,
        sha256: derived.sha256,
        quantize: params.quantize,
        pruneSparsity: params.pruneSparsity,
      },
    });
  }

  /** Lineage, both ways: the version a derived one was made from, and those made from it (oldest first). */
  derivedFrom(version: ModelVersion): Promise<ModelVersion | null> {
    return version.derivedFromId ? this.versionById(version.derivedFromId) : Promise.resolve(null);
  }

  derivatives(versionId: string): Promise<ModelVersion[]> {
    return this.prisma.modelVersion.findMany({
      where: { derivedFromId: versionId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
  }

  /**
   * The first step of publishing: the model, which the caller must manage, and `version` as a semantic
   * version that the model does not have yet (CONFLICT otherwise: versions are immutable).
   */
  async newVersionNumber(
    actor: Actor,
    slug: string,
    version: string,
    field: string,
  ): Promise<{ model: Model; version: string }> {
    const model = await this.prisma.model.findUnique({ where: { slug } });
    assertCanManage(actor.principal, model);
    const parsed = semver.parse(version.trim());
    if (!parsed || parsed.build.length > 0) {
      throw new BadUserInputError('version must be a semantic version such as 1.0.0 (no build metadata)', field);
    }
    const existing = await this.prisma.modelVersion.findUnique({
      where: { modelId_version: { modelId: model!.id, version: parsed.version } },
      select: { id: true },
    });
    if (existing)
      throw new ConflictError(`Version ${parsed.version} of ${slug} already exists; versions are immutable`);
    return { model: model!, version: parsed.version };
  }

  /**
   * The last step of publishing: the version, its derived variants (their blobs written in the same
   * transaction, so a failed commit, such as a concurrent publish of the same number, leaves none behind) and
   * the audit event, in one transaction; then the serving cache is warmed with what the version serves.
   */
  async commitVersion(
    actor: Actor,
    draft: VersionDraft,
    variants: readonly DerivedVariant[],
    event: Pick<AuditEntry, 'action' | 'details'>,
  ): Promise<ModelVersion> {
    let committed: { version: ModelVersion; served: string | null; changes: string[] };
    try {
      committed = await this.prisma.$transaction(async (tx) => {
        await this.upgrades.lockModel(tx, draft.model.id);
        const latestBefore = await this.upgrades.latest(tx, draft.model.id);
        const version = await tx.modelVersion.create({
          data: {
            id: draft.id,
            modelId: draft.model.id,
            version: draft.version,
            artifactId: draft.artifactId,
            signature: draft.signature as unknown as P.InputJsonObject,
            labels: draft.labels,
            changelog: draft.changelog,
            card: draft.card,
            metrics: draft.metrics ? (draft.metrics as unknown as P.InputJsonObject) : undefined,
            publishedById: requireUserId(actor.principal),
            derivedFromId: draft.derivedFromId,
          },
        });
        const served = await this.variants.create(tx, version.id, variants);
        // Consumers hear of it, and contracts pinned to `latest` react when it moved, in this transaction.
        const changes = await this.upgrades.versionPublished(tx, actor, draft.model, version, latestBefore);
        // Last: the audit chain's lock, which every audited write waits for, is held until commit from here.
        await this.audit.record(actor, { ...event, targetType: 'ModelVersion', targetId: version.id }, tx);
        return { version, served, changes };
      }, BLOB_TRANSACTION);
    } catch (error) {
      if (isUniqueViolation(error))
        throw new ConflictError(
          `Version ${draft.version} of ${draft.model.slug} already exists; versions are immutable`,
        );
      throw error;
    }
    await this.#catalogChanged(draft.model.id);
    await this.upgrades.committed(committed.changes);
    // Warm the serving cache so the first predict does not pay the load.
    const served = committed.served ?? (await this.artifacts.sha256Of(draft.artifactId));
    this.artifacts.warm(served).catch((error: unknown) => this.logger.warn({ err: error }, 'model warm-up failed'));
    return committed.version;
  }

  /** The owner's evaluation examples, checked and encoded like predict inputs. */
  async #evaluation(examples: PublishVersionInput['evaluation'], signature: Signature): Promise<EvaluationData | null> {
    if (!examples) return null;
    if (isNamed(signature)) {
      // The watermark's cost is measured on one output's predictions; a model of named tensors is marked unmeasured.
      throw new BadUserInputError(
        'evaluation examples apply to models of one input and one output; omit them for a model of named inputs or outputs',
        'input.evaluation',
      );
    }
    const tensor = await this.encoder.encode(signature, examples.inputs, 'input.evaluation.inputs', EVALUATION_LIMITS);
    const labels = examples.labels ?? null;
    if (labels) {
      const classes = signature.output.kind === 'classification' ? signature.output.labels.length : 0;
      if (labels.length !== tensor.shape[0] || labels.some((l) => !Number.isInteger(l) || l < 0 || l >= classes)) {
        throw new BadUserInputError(
          `evaluation.labels must hold one class index (0 to ${classes - 1}) per input`,
          'input.evaluation.labels',
        );
      }
    }
    return { tensor, labels };
  }

  async setAlias(actor: Actor, slug: string, alias: string, versionRef: string) {
    const model = await this.prisma.model.findUnique({ where: { slug } });
    assertCanManage(actor.principal, model);
    const name = alias.trim().toLowerCase();
    if (name === LATEST)
      throw new BadUserInputError('latest always follows the highest version and cannot be set', 'alias');
    if (!ALIAS.test(name))
      throw new BadUserInputError(
        'alias must be 1 to 32 lower-case letters, digits or hyphens, starting with a letter',
        'alias',
      );
    const version = await this.prisma.modelVersion.findUnique({
      where: { modelId_version: { modelId: (model as Model).id, version: versionRef.trim() } },
    });
    if (!version) throw new NotFoundError('Version');
    if (version.status === 'ARCHIVED')
      throw new BadUserInputError('An alias cannot point at an archived version', 'version');
    const modelId = (model as Model).id;
    const changes = await this.prisma.$transaction(async (tx) => {
      await this.upgrades.lockModel(tx, modelId);
      // Checked again under the model's lock, which archiving takes too: an archive that committed since wins.
      if ((await tx.modelVersion.findUniqueOrThrow({ where: { id: version.id } })).status === 'ARCHIVED')
        throw new BadUserInputError('An alias cannot point at an archived version', 'version');
      const previous = await tx.modelAlias.findUnique({
        where: { modelId_name: { modelId, name } },
        include: { version: true },
      });
      await tx.modelAlias.upsert({
        where: { modelId_name: { modelId, name } },
        create: { modelId, name, versionId: version.id },
        update: { versionId: version.id },
      });
      // Contracts pinned to the alias react (follow, or are offered the version) in this transaction.
      const moved = await this.upgrades.aliasMoved(tx, actor, model as Model, name, previous?.version ?? null, version);
      // Last: the audit chain's lock, which every audited write waits for, is held until commit from here.
      await this.audit.record(
        actor,
        {
          action: AuditAction.ALIAS_SET,
          targetType: 'ModelVersion',
          targetId: version.id,
          details: { model: slug, alias: name, version: version.version },
        },
        tx,
      );
      return moved;
    }, ALIAS_MOVE_TRANSACTION);
    await this.#catalogChanged(modelId);
    await this.upgrades.committed(changes);
    return { name, version };
  }

  async changeStatus(
    actor: Actor,
    slug: string,
    versionRef: string,
    status: 'DEPRECATED' | 'ARCHIVED',
  ): Promise<ModelVersion> {
    const model = await this.prisma.model.findUnique({ where: { slug } });
    assertCanManage(actor.principal, model);
    const version = await this.prisma.modelVersion.findUnique({
      where: { modelId_version: { modelId: (model as Model).id, version: versionRef.trim() } },
    });
    if (!version) throw new NotFoundError('Version');
    if (version.status === status) return version;
    if (version.status === 'ARCHIVED') throw new BadUserInputError('An archived version stays archived', 'version');
    const { changed, changes } = await this.prisma.$transaction(async (tx) => {
      await this.upgrades.lockModel(tx, version.modelId);
      // Checked again under the model's lock (a concurrent archive committed since the read above stays archived).
      if ((await tx.modelVersion.findUniqueOrThrow({ where: { id: version.id } })).status === 'ARCHIVED')
        throw new BadUserInputError('An archived version stays archived', 'version');
      const latestBefore = await this.upgrades.latest(tx, version.modelId);
      const updated = await tx.modelVersion.update({
        where: { id: version.id },
        data: { status, statusChangedAt: new Date() },
      });
      if (status === 'ARCHIVED') {
        const removed = await tx.modelAlias.findMany({ where: { versionId: version.id }, select: { name: true } });
        await tx.modelAlias.deleteMany({ where: { versionId: version.id } });
        await this.upgrades.versionArchived(
          tx,
          actor,
          model as Model,
          version,
          removed.map((a) => a.name),
        );
      }
      // Archiving the highest version moves `latest` back: contracts pinned to it react as to any move.
      const latestAfter = await this.upgrades.latest(tx, version.modelId);
      await this.audit.record(
        actor,
        {
          action: status === 'ARCHIVED' ? AuditAction.VERSION_ARCHIVED : AuditAction.VERSION_DEPRECATED,
          targetType: 'ModelVersion',
          targetId: version.id,
          details: { model: slug, version: version.version },
        },
        tx,
      );
      return {
        changed: updated,
        changes: latestAfter
          ? await this.upgrades.aliasMoved(tx, actor, model as Model, LATEST, latestBefore, latestAfter)
          : [],
      };
    });
    await this.#catalogChanged(changed.modelId);
    await this.upgrades.committed(changes);
    return changed;
  }

  versionById(id: string): Promise<ModelVersion> {
    return this.prisma.modelVersion.findUniqueOrThrow({ where: { id } });
  }

  /** Versions of a model, highest first. */
  async versions(modelId: string): Promise<ModelVersion[]> {
    return highestFirst(await this.prisma.modelVersion.findMany({ where: { modelId } }));
  }

  /** The highest release that still serves (prereleases only when there is no release), or null. */
  async latest(modelId: string): Promise<ModelVersion | null> {
    return latestOf(await this.prisma.modelVersion.findMany({ where: { modelId, status: { not: 'ARCHIVED' } } }));
  }

  /** A version by number, alias or `latest`; null when none matches. */
  async resolveVersion(modelId: string, ref: string): Promise<ModelVersion | null> {
    const wanted = ref.trim();
    if (wanted === LATEST) return this.latest(modelId);
    if (semver.valid(wanted)) {
      return this.prisma.modelVersion.findUnique({ where: { modelId_version: { modelId, version: wanted } } });
    }
    const alias = await this.prisma.modelAlias.findUnique({
      where: { modelId_name: { modelId, name: wanted.toLowerCase() } },
      include: { version: true },
    });
    return alias?.version ?? null;
  }

  async aliases(modelId: string): Promise<{ name: string; version: ModelVersion }[]> {
    const [latest, stored] = await Promise.all([
      this.latest(modelId),
      this.prisma.modelAlias.findMany({ where: { modelId }, include: { version: true }, orderBy: { name: 'asc' } }),
    ]);
    return [
      ...(latest ? [{ name: LATEST, version: latest }] : []),
      ...stored.map((a) => ({ name: a.name, version: a.version })),
    ];
  }
}
