// The HTTP status of a GraphQL response whose errors ask the client to retry later (SERVICE_UNAVAILABLE; also
// OVERLOADED, QUOTA_EXCEEDED and RATE_LIMITED, whose errors set 503 or 429 themselves). Such a status, with
// Retry-After, tells a client it may send the whole request again: true only when nothing in it ran. When a
// root field did run — `a` in `mutation { a: predict(…) b: predict(…) }`, or an operation of a batch — it may
// have been billed, and a retry of the whole request would bill it twice: the response stays 200 and each
// error's `extensions.retryAfter` speaks for its own field.
import type { ApolloServerPlugin, HTTPGraphQLHead } from '@apollo/server';
import {
  Kind,
  type DocumentNode,
  type FormattedExecutionResult,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import type { Context } from './context.js';
import { ErrorCode } from './errors.js';
import { httpStatusOf } from './rest-errors.js';

/** The statuses that invite a retry of the whole request. */
const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/**
 * The response keys of an operation's root fields, fragments included. A field under @skip/@include is counted
 * (as if it may have run: the safe side), meta fields (`__typename`) are not (they do nothing).
 */
function rootResponseKeys(
  selectionSet: SelectionSetNode,
  document: DocumentNode,
  keys = new Set<string>(),
  spread = new Set<string>(),
): Set<string> {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      if (!selection.name.value.startsWith('__')) keys.add(selection.alias?.value ?? selection.name.value);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      rootResponseKeys(selection.selectionSet, document, keys, spread);
    } else if (!spread.has(selection.name.value)) {
      spread.add(selection.name.value);
      const fragment = document.definitions.find(
        (definition) => definition.kind === Kind.FRAGMENT_DEFINITION && definition.name.value === selection.name.value,
      );
      if (fragment?.kind === Kind.FRAGMENT_DEFINITION) {
        rootResponseKeys(fragment.selectionSet, document, keys, spread);
      }
    }
  }
  return keys;
}

/**
 * Whether a root field of the operation ran to the end of its resolver: every root field that did not has an
 * error at its own path (a failure below it means its resolver returned). Nothing ran when the operation did
 * not execute (no `data`: it failed validation, or before).
 */
function anyRootFieldRan(
  { data, errors }: FormattedExecutionResult,
  operation: OperationDefinitionNode | undefined,
  document: DocumentNode | undefined,
): boolean {
  if (data === undefined || !operation || !document) return false;
  const failed = new Set(errors?.filter((error) => error.path?.length === 1).map((error) => error.path![0]));
  return [...rootResponseKeys(operation.selectionSet, document)].some((key) => !failed.has(key));
}

/** HTTP heads (one per request, shared by a batch's operations) of requests where something ran. */
const somethingRan = new WeakSet<HTTPGraphQLHead>();

export const retryStatusPlugin: ApolloServerPlugin<Context> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response, operation, document }) {
        if (response.body.kind !== 'single') return;
        const { singleResult } = response.body;
        // Each operation of a batch gets here before the head they share is sent: the last one decides. Without
        // errors every root field ran (the common case, decided without walking the operation).
        if (
          !singleResult.errors?.length ? singleResult.data != null : anyRootFieldRan(singleResult, operation, document)
        ) {
          somethingRan.add(response.http);
        }
        if (somethingRan.has(response.http)) {
          if (response.http.status !== undefined && RETRY_STATUSES.has(response.http.status)) {
            response.http.status = 200;
            response.http.headers.delete('retry-after');
          }
          return;
        }
        const unavailable = singleResult.errors?.find(
          (error) => error.extensions?.code === ErrorCode.SERVICE_UNAVAILABLE,
        );
        if (!unavailable) return;
        response.http.status = httpStatusOf(ErrorCode.SERVICE_UNAVAILABLE);
        response.http.headers.set('retry-after', String(unavailable.extensions?.retryAfter ?? 1));
      },
    };
  },
};
