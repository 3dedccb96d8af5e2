import type { Resolvers } from '../generated/graphql.js';

export const meteringResolvers: Resolvers = {
  Query: {
    usage: (_parent, { filter }, ctx) => ctx.services.usage.report(ctx.actor, filter),
    billingStatement: async (_parent, { contractId, period }, ctx) => {
      const contract = await ctx.services.contracts.findReadable(ctx.actor, contractId);
      return { contract, ...(await ctx.services.usage.statement(contract, period)) };
    },
    verifyUsageLedger: (_parent, _args, ctx) => ctx.services.metering.verifyLedger(),
  },
};
