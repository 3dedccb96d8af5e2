// Per-request batching of the lookups that nested fields make (owners of listed models, artifacts of
// listed versions), so a page of N items costs one query per kind, not N. The `visible…` lookups answer
// null for what the request's caller may not see: every edge to a Model or LicensePlan goes through them.
// Each loader is made on its first use: most requests (`me`, `predict`) never batch a lookup.
import DataLoader from 'dataloader';
import type { Principal } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type {
  Artifact,
  Contract,
  LicensePlan,
  Model,
  ModelAlias,
  ModelVersion,
  PlanStatus,
  User,
} from '../generated/prisma/client.js';
import type { EvaluationsService, VerifiedMetrics } from '../evaluation/evaluations-service.js';
import { canManage, canView } from '../models/model-policy.js';
import { highestFirst, latestOf } from '../models/models-service.js';
import type { VariantRow, VariantStore } from '../models/variants.js';
import { assertPageSize, connectionOf, decodeTimeCursor } from './cursors.js';
import { NotFoundError } from './errors.js';

function byId<T extends { id: string }>(ids: readonly string[], rows: T[]): (T | null)[] {
  const found = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => found.get(id) ?? null);
}

/** One model's page of plans, oldest first: what Model.plansConnection asks for. */
interface PlansPageKey {
  modelId: string;
  /** The statuses the caller may see and asked for. */
  statuses: PlanStatus[];
  first: number;
  /** The cursor's position (checked before batching, so that a bad cursor fails only its own field). */
  after: { createdAt: Date; id: string } | null;
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
  #versions?: DataLoader<string, ModelVersion[]>;
  #contracts?: DataLoader<string, Contract | null>;
  #viewerContracts?: DataLoader<string, Contract[]>;
  #servingVersions?: DataLoader<string, string[]>;
  #plansPages?: DataLoader<PlansPageKey, { rows: LicensePlan[]; totalCount: number }, string>;

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

  /** Every version of a model, highest first, by model id: the versions of all listed models in one read. */
  get versionsByModelId(): DataLoader<string, ModelVersion[]> {
    return (this.#versions ??= new DataLoader(async (ids) => {
      const rows = await this.prisma.modelVersion.findMany({ where: { modelId: { in: [...ids] } } });
      return ids.map((id) => highestFirst(rows.filter((row) => row.modelId === id)));
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

  /** Any contract: for edges that check the caller's right to it themselves (Prediction.contract). */
  get contractById(): DataLoader<string, Contract | null> {
    return (this.#contracts ??= new DataLoader(async (ids) =>
      byId(ids, await this.prisma.contract.findMany({ where: { id: { in: [...ids] } } })),
    ));
  }

  /** The caller's own contracts for a model (none for anonymous callers), by model id: the viewer… fields. */
  get viewerContractsByModelId(): DataLoader<string, Contract[]> {
    return (this.#viewerContracts ??= new DataLoader(async (ids) => {
      const principal = this.principal;
      if (principal.kind === 'anonymous') return ids.map(() => []);
      const rows = await this.prisma.contract.findMany({
        where: { consumerId: principal.userId, modelId: { in: [...ids] } },
        orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      });
      return ids.map((id) => rows.filter((row) => row.modelId === id));
    }));
  }

  /** The numbers of a model's versions that serve (not ARCHIVED), by model id. */
  get servingVersionsByModelId(): DataLoader<string, string[]> {
    return (this.#servingVersions ??= new DataLoader(async (ids) => {
      const rows = await this.prisma.modelVersion.findMany({
        where: { modelId: { in: [...ids] }, status: { not: 'ARCHIVED' } },
        select: { modelId: true, version: true },
      });
      return ids.map((id) => rows.filter((row) => row.modelId === id).map((row) => row.version));
    }));
  }

  /**
   * A page of a visible model's plans, oldest first, with their count: retired ones only for those who manage it.
   * The pages of every model a response lists are read together (two queries, whatever the number of models).
   */
  async plansPage(model: Model, status: PlanStatus | null | undefined, first: number, after: string | null) {
    const visible: PlanStatus[] = canManage(this.principal, model) ? ['ACTIVE', 'RETIRED'] : ['ACTIVE'];
    const statuses = status ? visible.filter((s) => s === status) : visible;
    assertPageSize(first);
    const position = after === null ? null : decodeTimeCursor(after);
    const { rows, totalCount } = await this.#plansPageLoader.load({
      modelId: model.id,
      statuses,
      first,
      after: position,
    });
    return { ...connectionOf(rows, first), totalCount };
  }

  get #plansPageLoader() {
    return (this.#plansPages ??= new DataLoader(
      async (keys: readonly PlansPageKey[]) => {
        const positions = keys.map((key) => key.after);
        // One lateral page per key: its count, and its first+1 rows after its cursor.
        const pages = await this.prisma.$queryRaw<{ ord: bigint; id: string | null; total: number }[]>`
          SELECT w.ord, page.id, counted.total
          FROM unnest(${keys.map((k) => k.modelId)}::uuid[], ${keys.map((k) => k.statuses.join(','))}::text[],
                      ${positions.map((p) => p?.createdAt ?? null)}::timestamptz[],
                      ${positions.map((p) => p?.id ?? null)}::uuid[], ${keys.map((k) => k.first + 1)}::int[])
               WITH ORDINALITY AS w(model_id, statuses, after_at, after_id, take, ord)
          CROSS JOIN LATERAL (
            SELECT count(*)::int AS total FROM license_plans p
            WHERE p.model_id = w.model_id AND p.status::text = ANY (string_to_array(w.statuses, ','))) counted
          LEFT JOIN LATERAL (
            SELECT p.id, p.created_at FROM license_plans p
            WHERE p.model_id = w.model_id AND p.status::text = ANY (string_to_array(w.statuses, ','))
              AND (w.after_at IS NULL OR (p.created_at, p.id) > (w.after_at, w.after_id))
            ORDER BY p.created_at, p.id LIMIT w.take) page ON true
          ORDER BY w.ord, page.created_at, page.id`;
        const ids = pages.flatMap((row) => (row.id === null ? [] : [row.id]));
        const plans = new Map(
          (await this.prisma.licensePlan.findMany({ where: { id: { in: ids } } })).map((plan) => [plan.id, plan]),
        );
        return keys.map((_key, index) => {
          const own = pages.filter((row) => Number(row.ord) === index + 1);
          return {
            rows: own.flatMap((row) => (row.id === null ? [] : [plans.get(row.id)!])),
            totalCount: own[0]?.total ?? 0,
          };
        });
      },
      { cacheKeyFn: (key) => JSON.stringify(key) },
    ));
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
