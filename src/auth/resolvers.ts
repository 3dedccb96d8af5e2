import type { Resolvers } from '../generated/graphql.js';
import { canSeeEmail } from '../models/model-policy.js';

export const authResolvers: Resolvers = {
  Query: {
    me: (_parent, _args, ctx) => ctx.services.auth.currentUser(ctx.actor.principal),
    myApiKeys: (_parent, _args, ctx) => ctx.services.apiKeys.listOwn(ctx.actor),
    myApiKeysConnection: (_parent, { includeRevoked, first, after }, ctx) =>
      ctx.services.apiKeys.listOwnConnection(ctx.actor, includeRevoked ?? true, first ?? 20, after),
    users: (_parent, { filter, first, after }, ctx) => ctx.services.users.list(ctx.actor, filter, first ?? 20, after),
  },
  Mutation: {
    signUp: (_parent, { input }, ctx) => ctx.services.auth.signUp(ctx.actor, input, ctx.userAgent),
    logIn: (_parent, { email, password }, ctx) => ctx.services.auth.logIn(ctx.actor, email, password, ctx.userAgent),
    refreshSession: (_parent, { refreshToken }, ctx) => ctx.services.auth.refresh(ctx.actor, refreshToken),
    logOut: (_parent, { refreshToken }, ctx) => ctx.services.auth.logOut(ctx.actor, refreshToken),
    createApiKey: (_parent, { name, scopes }, ctx) => ctx.services.apiKeys.create(ctx.actor, name, scopes),
    revokeApiKey: (_parent, { id }, ctx) => ctx.services.apiKeys.revoke(ctx.actor, id),
    setUserRole: (_parent, { userId, role }, ctx) => ctx.services.auth.setUserRole(ctx.actor, userId, role),
  },
  User: {
    // AuthPayload.user is the account the payload's credentials were just issued to (the request itself is
    // still anonymous): its own address.
    email: (user, _args, ctx, info) =>
      info.path.prev?.typename === 'AuthPayload' || canSeeEmail(ctx.actor.principal, user.id) ? user.email : null,
  },
};
