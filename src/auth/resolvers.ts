import type { Resolvers } from '../generated/graphql.js';
import { canSeeEmail } from '../models/model-policy.js';
import { BadUserInputError, UnauthenticatedError } from '../server/errors.js';
import { browserRefreshToken, clearBrowserSession, deliverToBrowser } from './browser-sessions.js';

/**
 * A mutation's `input`, else its deprecated arguments gathered into one (both forms work for one release).
 * Both at once is refused: which of the two was meant would be a guess.
 */
function inputOrDeprecated<T extends object>(
  input: T | null | undefined,
  deprecated: { [K in keyof T]?: T[K] | null },
): Partial<T> {
  const given = Object.entries(deprecated).filter(([, value]) => value !== undefined && value !== null);
  if (input === null || input === undefined) return Object.fromEntries(given) as Partial<T>;
  if (given.length > 0) {
    const names = given.map(([name]) => name).join(', ');
    throw new BadUserInputError(`Give either input or the deprecated arguments (${names}), not both`, 'input');
  }
  return input;
}

export const authResolvers: Resolvers = {
  Query: {
    me: (_parent, _args, ctx) => ctx.services.auth.currentUser(ctx.actor.principal),
    myApiKeys: (_parent, _args, ctx) => ctx.services.apiKeys.listOwn(ctx.actor),
  },
  Mutation: {
    signUp: async (_parent, { input }, ctx) => {
      const payload = await ctx.services.auth.signUp(ctx.actor, input, ctx.userAgent);
      return input.session === 'COOKIE' ? deliverToBrowser(ctx.exchange, payload) : payload;
    },
    logIn: async (_parent, { input, email, password }, ctx) => {
      const given = inputOrDeprecated(input, { email, password });
      if (given.email === undefined || given.password === undefined) {
        throw new BadUserInputError('input.email and input.password are required', 'input');
      }
      const payload = await ctx.services.auth.logIn(ctx.actor, given.email, given.password, ctx.userAgent);
      return given.session === 'COOKIE' ? deliverToBrowser(ctx.exchange, payload) : payload;
    },
    // Without a refresh token in the request: the browser's session cookie.
    refreshSession: async (_parent, { input, refreshToken }, ctx) => {
      const given = inputOrDeprecated(input, { refreshToken }).refreshToken;
      if (given !== undefined && given !== null) return ctx.services.auth.refresh(ctx.actor, given);
      const fromCookie = browserRefreshToken(ctx.exchange);
      try {
        return deliverToBrowser(ctx.exchange, await ctx.services.auth.refresh(ctx.actor, fromCookie));
      } catch (error) {
        // A spent, ended or expired session: the browser stops sending a cookie that can never work again.
        if (error instanceof UnauthenticatedError) clearBrowserSession(ctx.exchange);
        throw error;
      }
    },
    logOut: async (_parent, { input, refreshToken }, ctx) => {
      const given = inputOrDeprecated(input, { refreshToken }).refreshToken;
      if (given !== undefined && given !== null) return ctx.services.auth.logOut(ctx.actor, given);
      const loggedOut = await ctx.services.auth.logOut(ctx.actor, browserRefreshToken(ctx.exchange));
      clearBrowserSession(ctx.exchange);
      return loggedOut;
    },
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
