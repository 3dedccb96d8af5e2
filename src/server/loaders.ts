// Per-request batching of the lookups that nested fields make (owners of listed models, artifacts of
// listed versions), so a page of N items costs one query per kind, not N.
import DataLoader from 'dataloader';
import type { Prisma } from '../db/database.js';
import type { Artifact, LicensePlan, Model, ModelAlias, User } from '../generated/prisma/client.js';

function byId<T extends { id: string }>(ids: readonly string[], rows: T[]): (T | null)[] {
  const found = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => found.get(id) ?? null);
}

export function createLoaders(prisma: Prisma) {
  return {
    userById: new DataLoader<string, User | null>(async (ids) =>
      byId(ids, await prisma.user.findMany({ where: { id: { in: [...ids] } } })),
    ),
    modelById: new DataLoader<string, Model | null>(async (ids) =>
      byId(ids, await prisma.model.findMany({ where: { id: { in: [...ids] } } })),
    ),
    artifactById: new DataLoader<string, Artifact | null>(async (ids) =>
      byId(ids, await prisma.artifact.findMany({ where: { id: { in: [...ids] } } })),
    ),
    planById: new DataLoader<string, LicensePlan | null>(async (ids) =>
      byId(ids, await prisma.licensePlan.findMany({ where: { id: { in: [...ids] } } })),
    ),
    aliasesByModelId: new DataLoader<string, ModelAlias[]>(async (ids) => {
      const rows = await prisma.modelAlias.findMany({ where: { modelId: { in: [...ids] } }, orderBy: { name: 'asc' } });
      return ids.map((id) => rows.filter((row) => row.modelId === id));
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
