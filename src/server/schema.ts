// Builds the executable schema from the SDL contract and enforces function-level authorization from the
// @auth/@public directives, in one place. Resource-level rules (whose data) live in each domain's service.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { makeExecutableSchema } from '@graphql-tools/schema';
import { getDirective, MapperKind, mapSchema } from '@graphql-tools/utils';
import { defaultFieldResolver, type GraphQLObjectType, type GraphQLSchema } from 'graphql';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import type { ApiScope, Role } from '../generated/prisma/client.js';
import type { Resolvers } from '../generated/graphql.js';
import { authResolvers } from '../auth/resolvers.js';
import { auditResolvers } from '../audit/resolvers.js';
import { evaluationResolvers } from '../evaluation/resolvers.js';
import { eventResolvers } from '../events/resolvers.js';
import { jobResolvers } from '../jobs/resolvers.js';
import { batchPredictionResolvers } from '../predictions/batch-resolvers.js';
import { licensingResolvers } from '../licensing/resolvers.js';
import { meteringResolvers } from '../metering/resolvers.js';
import { modelResolvers } from '../models/resolvers.js';
import { predictionResolvers } from '../predictions/resolvers.js';
import { explanationResolvers } from '../explanations/resolvers.js';
import { watermarkResolvers } from '../watermark/resolvers.js';
import { webhookResolvers } from '../webhooks/resolvers.js';
import type { Principal } from '../auth/principal.js';
import type { Context } from './context.js';
import { ForbiddenError, UnauthenticatedError } from './errors.js';
import { withMergedMutationInputs } from './mutation-inputs.js';

export const SCHEMA_PATH = fileURLToPath(new URL('../../schema.graphql', import.meta.url));

const ROOT_TYPES = new Set(['Query', 'Mutation', 'Subscription']);

export interface AuthRule {
  roles?: Role[];
  scope?: ApiScope;
}

/** Throws when the caller may not call a field (or HTTP route) guarded by `rule`. */
export function assertAllowed(principal: Principal, rule: AuthRule): void {
  if (principal.kind === 'anonymous') throw new UnauthenticatedError();
  if (rule.roles?.length && !rule.roles.includes(principal.role)) {
    throw new ForbiddenError('Your role does not allow this operation');
  }
  if (principal.kind === 'apiKey') {
    if (!rule.scope) throw new ForbiddenError('This operation needs a user session, not an API key');
    if (!principal.scopes.includes(rule.scope)) {
      throw new ForbiddenError(`This API key lacks the ${rule.scope} scope`, { requiredScope: rule.scope });
    }
  }
}

/**
 * Whether the caller passes the @auth rule of a root field (`Mutation.approveContract`): capability fields
 * (viewerActions, viewerCanPredict…) answer by the very rule the field's call is checked with.
 */
export function passesAuthRule(principal: Principal, schema: GraphQLSchema, root: 'Query' | 'Mutation', field: string) {
  const definition = schema.getType(root) as GraphQLObjectType;
  const auth = getDirective(schema, definition.getFields()[field]!, 'auth')?.[0] as AuthRule | undefined;
  if (!auth) return true;
  try {
    assertAllowed(principal, auth);
    return true;
  } catch {
    return false;
  }
}

function withAuthorization(schema: GraphQLSchema): GraphQLSchema {
  return mapSchema(schema, {
    [MapperKind.OBJECT_FIELD]: (field, fieldName, typeName) => {
      if (!ROOT_TYPES.has(typeName)) return field;
      const auth = getDirective(schema, field, 'auth')?.[0] as AuthRule | undefined;
      const isPublic = Boolean(getDirective(schema, field, 'public')?.[0]);
      if (Boolean(auth) === isPublic) {
        throw new Error(`${typeName}.${fieldName} must carry exactly one of @auth or @public`);
      }
      if (!auth) return field;
      const resolve = field.resolve ?? defaultFieldResolver;
      return {
        ...field,
        resolve(source, args, ctx: Context, info) {
          assertAllowed(ctx.actor.principal, auth);
          return resolve(source, args, ctx, info);
        },
      };
    },
  });
}

export function buildSchema(): GraphQLSchema {
  // One resolver map per domain; makeExecutableSchema merges them.
  const resolvers: Resolvers[] = [
    { DateTime: DateTimeResolver, JSON: JSONResolver },
    authResolvers,
    modelResolvers,
    predictionResolvers,
    explanationResolvers,
    licensingResolvers,
    meteringResolvers,
    auditResolvers,
    watermarkResolvers,
    evaluationResolvers,
    webhookResolvers,
    jobResolvers,
    eventResolvers,
    batchPredictionResolvers,
  ];
  const schema = makeExecutableSchema({
    typeDefs: readFileSync(SCHEMA_PATH, 'utf8'),
    resolvers: resolvers as Parameters<typeof makeExecutableSchema>[0]['resolvers'],
    resolverValidationOptions: { requireResolversToMatchSchema: 'error' },
  });
  // Authorization wraps the merge, so a caller who may not call a mutation learns nothing about its input.
  return withAuthorization(withMergedMutationInputs(schema));
}
