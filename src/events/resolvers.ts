import type { Resolvers } from '../generated/graphql.js';

export const eventResolvers: Resolvers = {
  Query: {
    events: (_parent, { filter, first, after }, ctx) =>
      ctx.services.accountEvents.list(ctx.actor, filter, first ?? 50, after),
  },
};
