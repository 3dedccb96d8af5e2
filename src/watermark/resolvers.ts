import type { Resolvers } from '../generated/graphql.js';

export const watermarkResolvers: Resolvers = {
  Query: {
    verifyWatermark: (_parent, { artifactId }, ctx) => ctx.services.watermarks.verify(ctx.actor, artifactId),
  },
};
