import type { Resolvers } from '../generated/graphql.js';
import { canSeeEmail } from '../models/model-policy.js';
import { mutationInput } from '../server/mutation-inputs.js';
import { UnauthenticatedError } from '../server/errors.js';
import { browserRefreshToken, clearBrowserSession, deliverToBrowser } from './browser-sessions.js';

export const authResolvers: Resolvers = {
  Query: {
    me: (_parent, _args, ctx) => ctx.services.auth.currentUser(ctx.actor.principal),
    myApiKeys: (_parent, _args, ctx) => ctx.services.apiKeys.listOwn(ctx.actor),
    myApiKeysConnection: (_parent, { includeRevoked, first, after }, ctx) =>
      ctx.services.apiKeys.listOwnConnection(ctx.actor, includeRevoked ?? true, first ?? 20, after),
    users: (_parent, { filter, first, after }, ctx) => ctx.services.users.list(ctx.actor, filter, first ?? 20, after),
  },
  Mutation: {
    signUp: async (_parent, { input }, ctx) => {
      const payload = await ctx.services.auth.signUp(ctx.actor, input, ctx.userAgent);
      return input.session === 'COOKIE' ? deliverToBrowser(ctx.exchange, payload) : payload;
    },
    logIn: async (_parent, args, ctx) => {
      const { email, password, session } = mutationInput(args);
      const payload = await ctx.services.auth.logIn(ctx.actor, email, password, ctx.userAgent);
      return session === 'COOKIE' ? deliverToBrowser(ctx.exchange, payload) : payload;
    },
    // Without a refresh token in the request: the browser's session cookie.
    refreshSession: async (_parent, args, ctx) => {
      const { refreshToken } = mutationInput(args);
      if (refreshToken) return ctx.services.auth.refresh(ctx.actor, refreshToken);
      const fromCookie = browserRefreshToken(ctx.exchange);
      try {
        return deliverToBrowser(ctx.exchange, await ctx.services.auth.refresh(ctx.actor, fromCookie));
      } catch (error) {
        // A spent, ended or expired session: the browser stops sending a cookie that can never work again.
        if (error instanceof UnauthenticatedError) clearBrowserSession(ctx.exchange);
        throw error;
      }
    },
    logOut: async (_parent, args, ctx) => {
      const { refreshToken } = mutationInput(args);
      if (refreshToken) return ctx.services.auth.logOut(ctx.actor, refreshToken);
      const loggedOut = await ctx.services.auth.logOut(ctx.actor, browserRefreshToken(ctx.exchange));
      clearBrowserSession(ctx.exchange);
      return loggedOut;
    },
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
