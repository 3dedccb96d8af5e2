import type { ModelCard, OptimizationReport, Resolvers } from '../generated/graphql.js';
import type { OptimizationOptions } from '../lifecycle/optimization.js';
import type { OptimizedVariantReport } from '../lifecycle/optimization-service.js';
import type { VariantRow } from './variants.js';
import { describeMark, type WatermarkReport } from '../watermark/watermark-service.js';
import type { EvaluationMetrics } from './evaluation-metrics.js';
import { canManage, visibleWatermark } from './model-policy.js';
import { mutationInput, requiredInputField } from '../server/mutation-inputs.js';
import { storedSignature, typedSignature } from './signature.js';
import { versionsPage } from './models-service.js';

const asCard = (json: unknown) => json as ModelCard;

/** The public part of an optimised variant's report (not the owner mark's readings). */
function optimizationReport(variant: VariantRow): OptimizationReport {
  const params = variant.params as unknown as OptimizationOptions;
  const report = variant.report as unknown as OptimizedVariantReport;
  return {
    quantize: params.quantize,
    pruneSparsity: params.pruneSparsity,
    evaluationSamples: report.evaluationSamples,
    parent: report.parent,
    derived: report.derived,
    agreement: report.agreement,
    sizeRatio: report.sizeRatio,
    gzipRatio: report.gzipRatio,
    accuracyDrop: report.accuracyDrop,
    maxAccuracyDrop: report.maxAccuracyDrop,
    macroF1Drop: report.macroF1Drop,
  };
}

export const modelResolvers: Resolvers = {
  Query: {
    models: (_parent, { filter, first, after }, ctx) => ctx.services.models.list(ctx.actor, filter, first ?? 20, after),
    model: (_parent, { slug }, ctx) => ctx.services.models.findVisible(ctx.actor, slug),
  },
  Mutation: {
    createModel: (_parent, { input }, ctx) => ctx.services.models.create(ctx.actor, input),
    updateModel: (_parent, { input }, ctx) => {
      const { slug: _slug, ...changes } = input;
      return ctx.services.models.update(ctx.actor, requiredInputField(input, 'slug'), changes);
    },
    publishModelVersion: (_parent, { input }, ctx) =>
      ctx.services.models.publishVersion(ctx.actor, { ...input, metrics: input.metrics as EvaluationMetrics | null }),
    setVersionAlias: (_parent, args, ctx) => {
      const { model, alias, version } = mutationInput(args);
      return ctx.services.models.setAlias(ctx.actor, model, alias, version);
    },
    deprecateModelVersion: (_parent, args, ctx) => {
      const { model, version } = mutationInput(args);
      return ctx.services.models.changeStatus(ctx.actor, model, version, 'DEPRECATED');
    },
    optimizeModelVersion: (_parent, { input }, ctx) => ctx.services.models.optimizeVersion(ctx.actor, input),
    archiveModelVersion: (_parent, args, ctx) => {
      const { model, version } = mutationInput(args);
      return ctx.services.models.changeStatus(ctx.actor, model, version, 'ARCHIVED');
    },
  },
  Model: {
    owner: async (model, _args, ctx) => (await ctx.loaders.userById.load(model.ownerId))!,
    card: (model) => asCard(model.card),
    versions: (model, _args, ctx) => ctx.services.models.versions(model.id),
    versionsConnection: async (model, { status, first, after }, ctx) =>
      versionsPage(await ctx.loaders.versionsByModelId.load(model.id), status, first ?? 20, after),
    viewerCanManage: (model, _args, ctx) => canManage(ctx.actor.principal, model),
    version: (model, { version }, ctx) => ctx.services.models.resolveVersion(model.id, version),
    aliases: (model, _args, ctx) => ctx.services.models.aliases(model.id),
  },
  ModelVersion: {
    // A version is reached only through its visible model (or a call the caller just made on it).
    model: (version, _args, ctx) => ctx.loaders.requireVisibleModel(version.modelId),
    sizeBytes: async (version, _args, ctx) => (await ctx.loaders.artifactById.load(version.artifactId))!.sizeBytes,
    sha256: async (version, _args, ctx) => (await ctx.loaders.artifactById.load(version.artifactId))!.sha256,
    card: (version) => asCard(version.card),
    io: (version) => typedSignature(storedSignature(version.signature)),
    metrics: (version) => version.metrics as EvaluationMetrics | null,
    watermark: async (version, _args, ctx) =>
      visibleWatermark(
        ctx.actor.principal,
        (await ctx.loaders.modelById.load(version.modelId))!,
        describeMark(
          // An optimised version carries the mark of its lineage's first version.
          ((version.derivedFromId
            ? (await ctx.services.variants.ownerMarkOf(version)).mark
            : await ctx.loaders.ownerMarkByVersionId.load(version.id)
          )?.report ?? { marked: false }) as unknown as WatermarkReport,
        ),
      ),
    variants: async (version, _args, ctx) =>
      ctx.services.variants.visible(
        ctx.actor.principal,
        (await ctx.loaders.modelById.load(version.modelId))!,
        version.id,
      ),
    derivedFrom: (version, _args, ctx) => ctx.services.models.derivedFrom(version),
    derivatives: (version, _args, ctx) => ctx.services.models.derivatives(version.id),
    optimization: async (version, _args, ctx) => {
      if (!version.derivedFromId) return null;
      const variant = await ctx.services.variants.optimized(version.id);
      return variant && optimizationReport(variant);
    },
    aliases: async (version, _args, ctx) => {
      // Both batched: a page of versions reads each model's versions and aliases once, not once per version.
      const [latest, stored] = await Promise.all([
        ctx.loaders.latestVersionByModelId.load(version.modelId),
        ctx.loaders.aliasesByModelId.load(version.modelId),
      ]);
      return [
        ...(latest?.id === version.id ? ['latest'] : []),
        ...stored.filter((alias) => alias.versionId === version.id).map((alias) => alias.name),
      ];
    },
  },
  Preprocessing: {
    // typedSignature names each preprocessing's type.
    __resolveType: (preprocessing) => preprocessing.__typename!,
  },
};
