// The console's one way to the API: typed documents (codegen's client preset, documentMode string) posted to
// /graphql with the session's access token. The access token lives in memory only; the refresh token is the
// server's HttpOnly cookie, exchanged (with the x-csrf-token header, double-submitted from the readable mm_csrf
// cookie) when the page loads and whenever the access token has expired.
import { graphql } from '../gql';
import type { RefreshSessionMutation, SessionUserFieldsFragment, TypedDocumentString } from '../gql/graphql';

export interface ApiErrorDetail {
  message: string;
  code: string;
  field?: string;
}

/** An error the API answered (or the network's), with its `extensions.code`. */
export class ApiError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  readonly details: ApiErrorDetail[];
  constructor(details: ApiErrorDetail[]) {
    super(details[0]?.message ?? 'Unknown error');
    this.code = details[0]?.code ?? 'INTERNAL_SERVER_ERROR';
    this.field = details[0]?.field;
    this.details = details;
  }
}

const CODE_BY_STATUS: Record<number, string> = { 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND' };

/**
 * The ApiError of a plain HTTP route's error answer (`{"error": {"code", "message"}}`: uploads, the CSV export);
 * a body that is not that (a proxy's page) is known by its status alone.
 */
export function restErrorOf(status: number, body: unknown): ApiError {
  const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
  return new ApiError([
    {
      code: error?.code ?? CODE_BY_STATUS[status] ?? 'INTERNAL_SERVER_ERROR',
      message: error?.message ?? `The server answered ${status}`,
    },
  ]);
}

/** The account as the session keeps it: the same fields from sign-up, log-in and refresh (api/auth). */
export const SessionUserFields = graphql(`
  fragment SessionUserFields on User {
    id
    email
    displayName
    role
  }
`);

export type SessionUser = SessionUserFieldsFragment;

interface SessionState {
  accessToken: string | null;
  user: SessionUser | null;
}

let state: SessionState = { accessToken: null, user: null };
const listeners = new Set<() => void>();

export const session = {
  get: (): SessionState => state,
  subscribe(listener: () => void): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  set(next: SessionState): void {
    state = next;
    for (const listener of listeners) listener();
  },
};

function csrfToken(): string {
  const match = /(?:^|;\s*)mm_csrf=([^;]+)/.exec(document.cookie);
  return match ? decodeURIComponent(match[1]!) : '';
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; field?: string } }[];
}

async function post<T>(query: string, variables: unknown, token: string | null): Promise<GraphQLResponse<T>> {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-csrf-token': csrfToken() };
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers,
      credentials: 'same-origin',
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError([{ message: 'The server could not be reached', code: 'NETWORK_ERROR' }]);
  }
  try {
    return (await response.json()) as GraphQLResponse<T>;
  } catch {
    throw new ApiError([{ message: `The server answered ${response.status}`, code: 'NETWORK_ERROR' }]);
  }
}

function errorsOf(body: GraphQLResponse<unknown>): ApiError {
  return new ApiError(
    (body.errors ?? []).map((error) => ({
      message: error.message,
      code: error.extensions?.code ?? 'INTERNAL_SERVER_ERROR',
      field: error.extensions?.field,
    })),
  );
}

const RefreshSession = graphql(`
  mutation RefreshSession {
    refreshSession(input: {}) {
      accessToken
      user {
        ...SessionUserFields
      }
    }
  }
`);

let refreshing: Promise<boolean> | null = null;

/**
 * Exchanges the session cookie for a new access token; false when there is no live session. The refresh token is
 * single-use and every tab shares the cookie: a Web Lock makes tabs take turns, so a second tab (reloading at
 * the same moment) sends the cookie the first one just received instead of the one it spent, which would end
 * the session as a replay.
 */
export function refreshSession(): Promise<boolean> {
  if (!refreshing) {
    const turn: Promise<boolean> = navigator.locks
      ? navigator.locks.request('modelmarket-session-refresh', exchangeCookie).then((granted) => granted)
      : exchangeCookie();
    refreshing = turn.finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function exchangeCookie(): Promise<boolean> {
  try {
    const body = await post<RefreshSessionMutation>(RefreshSession.toString(), {}, null);
    if (!body.data?.refreshSession) {
      session.set({ accessToken: null, user: null });
      return false;
    }
    const { accessToken, user } = body.data.refreshSession;
    session.set({ accessToken, user });
    return true;
  } catch {
    return false;
  }
}

/** Runs one operation; an expired access token is refreshed once from the cookie and the operation retried. */
export async function request<TResult, TVariables>(
  document: TypedDocumentString<TResult, TVariables>,
  ...[variables]: TVariables extends Record<string, never> ? [] : [TVariables]
): Promise<TResult> {
  const query = document.toString();
  let body = await post<TResult>(query, variables ?? {}, state.accessToken);
  const expired = body.errors?.some((error) => error.extensions?.code === 'UNAUTHENTICATED');
  if (expired && state.accessToken && (await refreshSession())) {
    body = await post<TResult>(query, variables ?? {}, state.accessToken);
  }
  if (body.errors?.length) throw errorsOf(body);
  if (!body.data) throw new ApiError([{ message: 'Empty answer', code: 'INTERNAL_SERVER_ERROR' }]);
  return body.data;
}

/** The access token, for the REST routes (artifact upload, CSV download) that take a bearer token. */
export function bearer(): Record<string, string> {
  return state.accessToken ? { authorization: `Bearer ${state.accessToken}` } : {};
}
