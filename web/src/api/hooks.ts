// React Query over request(): queries are keyed by their document and variables (and the signed-in account, so
// that logging out or in never shows another account's cached answers).
import { useMutation, useQuery, useQueryClient, type UseQueryOptions } from '@tanstack/react-query';
import { useSyncExternalStore } from 'react';
import type { TypedDocumentString } from '../gql/graphql';
import { request, session, type ApiError } from './client';

export function useSession() {
  return useSyncExternalStore(session.subscribe, session.get);
}

export function useGql<TResult, TVariables>(
  document: TypedDocumentString<TResult, TVariables>,
  variables: TVariables,
  options: Omit<UseQueryOptions<TResult, ApiError>, 'queryKey' | 'queryFn'> = {},
) {
  const { user } = useSession();
  return useQuery<TResult, ApiError>({
    queryKey: [document.toString(), variables, user?.id ?? null],
    queryFn: () => (request as (d: unknown, v: unknown) => Promise<TResult>)(document, variables),
    ...options,
  });
}

/** A mutation; every query is refetched after it succeeds (the console's lists are small and paged). */
export function useGqlMutation<TResult, TVariables>(document: TypedDocumentString<TResult, TVariables>) {
  const client = useQueryClient();
  return useMutation<TResult, ApiError, TVariables>({
    mutationFn: (variables) => (request as (d: unknown, v: unknown) => Promise<TResult>)(document, variables),
    onSuccess: () => client.invalidateQueries(),
  });
}
