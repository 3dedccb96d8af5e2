import type { BatchPredictionError as BatchPredictionErrorType, Resolvers } from '../generated/graphql.js';
import { resultsPath } from './batch-predictions-service.js';
import { mutationInput } from '../server/mutation-inputs.js';

export const batchPredictionResolvers: Resolvers = {
  Query: {
    batchPrediction: (_parent, { id }, ctx) => ctx.services.batchPredictions.find(ctx.actor, id),
    batchPredictions: (_parent, { filter, first, after }, ctx) =>
      ctx.services.batchPredictions.mine(ctx.actor, filter, first ?? 20, after),
  },
  Mutation: {
    createBatchPrediction: (_parent, { input }, ctx) => ctx.services.batchPredictions.create(ctx.actor, input),
    cancelBatchPrediction: (_parent, args, ctx) =>
      ctx.services.batchPredictions.cancel(ctx.actor, mutationInput(args).id),
  },
  BatchPrediction: {
    model: (batch, _args, ctx) => ctx.loaders.requireVisibleModel(batch.modelId),
    version: (batch, _args, ctx) => ctx.services.models.versionById(batch.versionId),
    // The data set is the requester's: another reader of the batch (an admin) sees it too, anyone else null.
    dataset: (batch, _args, ctx) =>
      batch.datasetId === null ? null : ctx.services.datasets.find(ctx.actor, batch.datasetId).catch(() => null),
    error: (batch) => batch.error as BatchPredictionErrorType | null,
    resultsUrl: (batch) => (batch.resultsDeletedAt ? null : resultsPath(batch.id)),
  },
};
