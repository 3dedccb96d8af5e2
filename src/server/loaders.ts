// Per-request batching of the lookups that nested fields make (owners of listed models, artifacts of
// listed versions), so a page of N items costs one query per kind, not N. The `visible…` lookups answer
// null for what the request's caller may not see: every edge to a Model or LicensePlan goes through them.
import DataLoader from 'dataloader';
import type { Principal } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { Artifact, LicensePlan, Model, ModelAlias, User } from '../generated/prisma/client.js';
import { canView } from '../models/model-policy.js';
import { NotFoundError } from './errors.js';

function byId<T extends { id: string }>(ids: readonly string[], rows: T[]): (T | null)[] {
  const found = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => found.get(id) ?? null);
}

export function createLoaders(prisma: Prisma, principal: Principal) {
  const modelById = new DataLoader<string, Model | null>(async (ids) =>
    byId(ids, await prisma.model.findMany({ where: { id: { in: [...ids] } } })),
  );
  const planById = new DataLoader<string, LicensePlan | null>(async (ids) =>
    byId(ids, await prisma.licensePlan.findMany({ where: { id: { in: [...ids] } } })),
  );
  const visibleModelById = async (id: string): Promise<Model | null> => {
    const model = await modelById.load(id);
    return model && canView(principal, model) ? model : null;
  };
  return {
    userById: new DataLoader<string, User | null>(async (ids) =>
      byId(ids, await prisma.user.findMany({ where: { id: { in: [...ids] } } })),
    ),
    /** Any model, visible or not: for decisions about it (who manages it), never to hand to the client. */
    modelById,
    visibleModelById,
    /**
     * For edges reached only through a visible model (a plan's, a version's): should that ever not hold, they
     * fail closed with NOT_FOUND rather than hand the model out.
     */
    requireVisibleModel: async (id: string): Promise<Model> => {
      const model = await visibleModelById(id);
      if (!model) throw new NotFoundError('Model');
      return model;
    },
    /** A plan, or null when its model is not visible to the caller. */
    visiblePlanById: async (id: string): Promise<LicensePlan | null> => {
      const plan = await planById.load(id);
      return plan && (await visibleModelById(plan.modelId)) ? plan : null;
    },
    artifactById: new DataLoader<string, Artifact | null>(async (ids) =>
      byId(ids, await prisma.artifact.findMany({ where: { id: { in: [...ids] } } })),
    ),
    aliasesByModelId: new DataLoader<string, ModelAlias[]>(async (ids) => {
      const rows = await prisma.modelAlias.findMany({ where: { modelId: { in: [...ids] } }, orderBy: { name: 'asc' } });
      return ids.map((id) => rows.filter((row) => row.modelId === id));
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
