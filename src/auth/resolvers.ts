import type { Resolvers } from '../generated/graphql.js';
import { canSeeEmail } from '../models/model-policy.js';
import { mutationInput, requiredInputField } from '../server/mutation-inputs.js';

export const authResolvers: Resolvers = {
  Query: {
    me: (_parent, _args, ctx) => ctx.services.auth.currentUser(ctx.actor.principal),
    myApiKeys: (_parent, _args, ctx) => ctx.services.apiKeys.listOwn(ctx.actor),
  },
  Mutation: {
    signUp: (_parent, { input }, ctx) => ctx.services.auth.signUp(ctx.actor, input, ctx.userAgent),
    logIn: (_parent, args, ctx) => {
      const { email, password } = mutationInput(args);
      return ctx.services.auth.logIn(ctx.actor, email, password, ctx.userAgent);
    },
    refreshSession: (_parent, args, ctx) =>
      ctx.services.auth.refresh(ctx.actor, requiredInputField(mutationInput(args), 'refreshToken')),
    logOut: (_parent, args, ctx) =>
      ctx.services.auth.logOut(ctx.actor, requiredInputField(mutationInput(args), 'refreshToken')),
    createApiKey: (_parent, args, ctx) => {
      const { name, scopes } = mutationInput(args);
      return ctx.services.apiKeys.create(ctx.actor, name, scopes);
    },
    revokeApiKey: (_parent, args, ctx) => ctx.services.apiKeys.revoke(ctx.actor, mutationInput(args).id),
    setUserRole: (_parent, args, ctx) => {
      const { userId, role } = mutationInput(args);
      return ctx.services.auth.setUserRole(ctx.actor, userId, role);
    },
  },
  User: {
    // AuthPayload.user is the account the payload's credentials were just issued to (the request itself is
    // still anonymous): its own address.
    email: (user, _args, ctx, info) =>
      info.path.prev?.typename === 'AuthPayload' || canSeeEmail(ctx.actor.principal, user.id) ? user.email : null,
  },
};
