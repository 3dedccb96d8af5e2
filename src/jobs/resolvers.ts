import type { Resolvers } from '../generated/graphql.js';

export const jobResolvers: Resolvers = {
  Query: {
    jobs: (_parent, { filter, first, after }, ctx) => ctx.services.jobsAdmin.list(filter, first ?? 50, after),
  },
};
