// Per-request batching of the lookups that nested fields make (owners of listed models, artifacts of
// listed versions), so a page of N items costs one query per kind, not N. The `visible…` lookups answer
// null for what the request's caller may not see: every edge to a Model or LicensePlan goes through them.
// Each loader is made on its first use: most requests (`me`, `predict`) never batch a lookup.
import DataLoader from 'dataloader';
import type { Principal } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { Artifact, LicensePlan, Model, ModelAlias, ModelVersion, User } from '../generated/prisma/client.js';
import type { EvaluationsService, VerifiedMetrics } from '../evaluation/evaluations-service.js';
import { canView } from '../models/model-policy.js';
import { latestOf } from '../models/models-service.js';
import type { VariantRow, VariantStore } from '../models/variants.js';
import { NotFoundError } from './errors.js';

function byId<T extends { id: string }>(ids: readonly string[], rows: T[]): (T | null)[] {
  const found = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => found.get(id) ?? null);
}

export class Loaders {
  #users?: DataLoader<string, User | null>;
  #models?: DataLoader<string, Model | null>;
  #plans?: DataLoader<string, LicensePlan | null>;
  #artifacts?: DataLoader<string, Artifact | null>;
  #aliases?: DataLoader<string, ModelAlias[]>;
  #verifiedMetrics?: DataLoader<string, VerifiedMetrics | null>;
  #ownerMarks?: DataLoader<string, VariantRow | null>;
  #latestVersions?: DataLoader<string, ModelVersion | null>;

  constructor(
    private readonly prisma: Prisma,
    private readonly variants: VariantStore,
    private readonly principal: Principal,
    private readonly evaluations: EvaluationsService,
  ) {}

  /** The published evaluation a version's card shows, by version id. */
  get verifiedMetrics(): DataLoader<string, VerifiedMetrics | null> {
    return (this.#verifiedMetrics ??= new DataLoader((ids) => this.evaluations.verifiedMetrics(ids)));
  }

  get userById(): DataLoader<string, User | null> {
    return (this.#users ??= new DataLoader(async (ids) =>
      byId(ids, await this.prisma.user.findMany({ where: { id: { in: [...ids] } } })),
    ));
  }

  /** Any model, visible or not: for decisions about it (who manages it), never to hand to the client. */
  get modelById(): DataLoader<string, Model | null> {
    return (this.#models ??= new DataLoader(async (ids) =>
      byId(ids, await this.prisma.model.findMany({ where: { id: { in: [...ids] } } })),
    ));
  }

  get artifactById(): DataLoader<string, Artifact | null> {
    return (this.#artifacts ??= new DataLoader(async (ids) =>
      byId(ids, await this.prisma.artifact.findMany({ where: { id: { in: [...ids] } } })),
    ));
  }

  get aliasesByModelId(): DataLoader<string, ModelAlias[]> {
    return (this.#aliases ??= new DataLoader(async (ids) => {
      const rows = await this.prisma.modelAlias.findMany({
        where: { modelId: { in: [...ids] } },
        orderBy: { name: 'asc' },
      });
      return ids.map((id) => rows.filter((row) => row.modelId === id));
    }));
  }

  /** The version `latest` names, by model id (null: none serves): one read for every listed version's aliases. */
  get latestVersionByModelId(): DataLoader<string, ModelVersion | null> {
    return (this.#latestVersions ??= new DataLoader(async (ids) => {
      const serving = await this.prisma.modelVersion.findMany({
        where: { modelId: { in: [...ids] }, status: { not: 'ARCHIVED' } },
      });
      return ids.map((id) => latestOf(serving.filter((version) => version.modelId === id)));
    }));
  }

  /** A version's owner-marked variant (null: published before marking existed). */
  get ownerMarkByVersionId(): DataLoader<string, VariantRow | null> {
    return (this.#ownerMarks ??= new DataLoader(async (ids) => {
      const found = await this.variants.findMany(ids, 'OWNER_MARKED');
      return ids.map((id) => found.get(id) ?? null);
    }));
  }

  get #planById(): DataLoader<string, LicensePlan | null> {
    return (this.#plans ??= new DataLoader(async (ids) =>
      byId(ids, await this.prisma.licensePlan.findMany({ where: { id: { in: [...ids] } } })),
    ));
  }

  async visibleModelById(id: string): Promise<Model | null> {
    const model = await this.modelById.load(id);
    return model && canView(this.principal, model) ? model : null;
  }

  /**
   * For edges reached only through a visible model (a plan's, a version's): should that ever not hold, they
   * fail closed with NOT_FOUND rather than hand the model out.
   */
  async requireVisibleModel(id: string): Promise<Model> {
    const model = await this.visibleModelById(id);
    if (!model) throw new NotFoundError('Model');
    return model;
  }

  /** A plan, or null when its model is not visible to the caller. */
  async visiblePlanById(id: string): Promise<LicensePlan | null> {
    const plan = await this.#planById.load(id);
    return plan && (await this.visibleModelById(plan.modelId)) ? plan : null;
  }
}
