import type { Resolvers } from '../generated/graphql.js';

export const predictionResolvers: Resolvers = {
  Mutation: {
    predict: async (_parent, { input }, ctx) => {
      const { prediction, warnings } = await ctx.services.predictions.predict(ctx.actor, input);
      ctx.warnings.push(...warnings);
      return prediction;
    },
  },
};
