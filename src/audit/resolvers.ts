import type { Resolvers } from '../generated/graphql.js';

export const auditResolvers: Resolvers = {
  Query: {
    auditEvents: (_parent, { filter, first, after }, ctx) => ctx.services.audit.list(filter, first ?? 50, after),
    verifyAuditChain: (_parent, { from, to }, ctx) => ctx.services.audit.verifyChain(from, to),
  },
  AuditEvent: {
    id: (event) => String(event.id),
    chainSeq: (event) => String(event.chainSeq),
    actor: (event, _args, ctx) => (event.actorId === null ? null : ctx.loaders.userById.load(event.actorId)),
    prevHash: (event) => event.prevHash ?? '',
    hash: (event) => event.hash ?? '',
  },
};
