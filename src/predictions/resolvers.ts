import type { Resolvers } from '../generated/graphql.js';
import { PREDICTION_QUOTA_UNITS } from '../licensing/predict-authorizer.js';
import { BadUserInputError } from '../server/errors.js';
import { selects } from '../server/selection.js';
import { mutationInput } from '../server/mutation-inputs.js';

export const predictionResolvers: Resolvers = {
  Query: {
    prediction: (_parent, { id }, ctx) => ctx.services.asyncPredictions.find(ctx.actor, id),
    predictions: (_parent, { filter, first, after }, ctx, info) => {
      // A page holds up to 100 predictions of up to PREDICT_MAX_OUTPUT_VALUES values each: too much for one
      // response, so outputs are read one prediction at a time; refused here, before the page is read.
      if (selects(info, ['edges', 'node', 'outputs']))
        throw new BadUserInputError('outputs are read one prediction at a time, with prediction(id)', 'outputs');
      return ctx.services.asyncPredictions.list(ctx.actor, filter, first ?? 20, after ?? null);
    },
  },
  Mutation: {
    predict: async (_parent, { input }, ctx) => {
      const { prediction, warnings } = await ctx.services.predictions.predict(ctx.actor, input);
      ctx.warnings.push(...warnings);
      return prediction;
    },
    createPrediction: async (_parent, { input }, ctx) => {
      const { prediction, warnings } = await ctx.services.asyncPredictions.create(ctx.actor, input);
      ctx.warnings.push(...warnings);
      return prediction;
    },
    cancelPrediction: (_parent, args, ctx) => ctx.services.asyncPredictions.cancel(ctx.actor, mutationInput(args).id),
  },
  Prediction: {
    // The caller is the contract's consumer (calls are billed only to the caller's own contracts).
    contract: async (prediction, _args, ctx) => {
      if (prediction.contractId === null) return null;
      const contract = await ctx.loaders.contractById.load(prediction.contractId);
      const principal = ctx.actor.principal;
      return contract && principal.kind !== 'anonymous' && contract.consumerId === principal.userId ? contract : null;
    },
    quotaUnits: (prediction) =>
      prediction.contractId === null ? 0 : prediction.outputs.length * PREDICTION_QUOTA_UNITS,
  },
  AsyncPrediction: {
    model: (prediction, _args, ctx) => ctx.loaders.requireVisibleModel(prediction.modelId),
    modelVersion: (prediction, _args, ctx) => ctx.services.models.versionById(prediction.modelVersionId),
    outputs: (prediction, _args, ctx) => ctx.services.asyncPredictions.outputsOf(prediction),
    outputsExpireAt: (prediction) => (prediction.sealedOutput === null ? null : prediction.dataExpiresAt),
    error: (prediction) =>
      prediction.errorCode === null
        ? null
        : { code: prediction.errorCode, message: prediction.errorMessage ?? '', reason: prediction.errorReason },
    metrics: (prediction) =>
      prediction.latencyMs === null ? null : { latencyMs: prediction.latencyMs, units: prediction.units },
  },
};
