import type { Resolvers } from '../generated/graphql.js';

export const explanationResolvers: Resolvers = {
  Mutation: {
    explain: async (_parent, { input }, ctx) => {
      const { explanation, warnings } = await ctx.services.explanations.explain(ctx.actor, input);
      ctx.warnings.push(...warnings);
      return explanation;
    },
  },
};
