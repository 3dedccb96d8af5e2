// A typed client of the public API (GraphQL and the /v1 routes), for Node 20. It is a consumer like any other:
// it knows the server only through schema.graphql (operations typed by codegen) and the documented HTTP routes.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import {
  AcceptLicenseDocument,
  CancelPredictionDocument,
  CreateApiKeyDocument,
  CreateModelDocument,
  CreatePredictionDocument,
  LogInDocument,
  LogOutDocument,
  MeDocument,
  ModelDocument,
  ModelsDocument,
  ModelsWithPlansDocument,
  MyApiKeysDocument,
  MyContractsDocument,
  PredictDocument,
  PredictionDocument,
  PublishModelVersionDocument,
  RefreshSessionDocument,
  RevokeApiKeyDocument,
  UsageDocument,
  type ApiScope,
  type CreateModelInput,
  type CreatePredictionInput,
  type ModelFilter,
  type PlanFieldsFragment,
  type PredictInput,
  type PublishModelVersionInput,
  type SessionFragment,
  type UsageFilter,
} from '../generated/client.js';
import { errorFor, ModelmarketError, NetworkError, UnauthenticatedError } from './errors.js';
import { postArtifact, readArtifactDir, type RawResponse } from './upload.js';

/** A session's credentials; the refresh token is single-use, so every refresh hands out a new pair. */
export interface SessionTokens {
  accessToken: string;
  refreshToken: string;
  /** Epoch milliseconds at which the access token expires, when known. */
  expiresAt?: number;
}

export interface RetryOptions {
  /** Tries in all, the first included (default 5). */
  maxAttempts?: number;
  /** The first backoff; each retry doubles it (default 200 ms). */
  baseDelayMs?: number;
  /** The longest wait between tries (default 30 s). A server asking for a longer wait gets the error instead. */
  maxDelayMs?: number;
}

export interface RetryEvent {
  /** The try that failed (1 for the first). */
  attempt: number;
  delayMs: number;
  error: ModelmarketError;
}

export interface ModelmarketClientOptions {
  /** The server's origin (`http://localhost:4000`) or its GraphQL URL (`…/graphql`). */
  url: string;
  /** An API key (`mmk_…`): sent as `x-api-key`; no session is used. */
  apiKey?: string;
  /** Log in with these when there is no session, and again when the session cannot be refreshed. */
  email?: string;
  password?: string;
  /** A session to resume (e.g. stored by an earlier run). */
  accessToken?: string;
  refreshToken?: string;
  /**
   * When that session's access token expires (epoch ms, as `SessionTokens.expiresAt`): it is then refreshed a
   * little before, instead of after a refused call.
   */
  expiresAt?: number;
  /** Called with every new pair of tokens (log-in and refresh), to persist them: the old refresh token is spent. */
  onTokens?: (tokens: SessionTokens) => void | Promise<void>;
  /**
   * For a session shared by several processes (a stored CLI session): called in place of a plain refresh with
   * the session in hand and a `refresh(refreshToken)` function; returns the pair to use, under the caller's lock:
   * a newer pair another process stored, or refresh(…)'s, stored. Two processes spending one refresh token would
   * end the session.
   */
  sharedRefresh?: (
    session: SessionTokens,
    refresh: (refreshToken: string) => Promise<SessionTokens>,
  ) => Promise<SessionTokens>;
  retry?: RetryOptions;
  /** Called before each retry (for logs and tests). */
  onRetry?: (event: RetryEvent) => void;
  /** Per request (default 60 s); an upload fails after this long without progress. */
  timeoutMs?: number;
}

export interface UploadOptions {
  /** Called as the body goes out, with bytes sent and the body's total size. */
  onProgress?: (bytesSent: number, total: number) => void;
}

export interface UploadedArtifact {
  id: string;
  sha256: string;
  sizeBytes: number;
}

export interface RequestOptions {
  /** Safe to send twice (queries; predict with a requestId): retried on OVERLOADED, RATE_LIMITED and 503. */
  idempotent?: boolean;
  /** Send no credentials (log-in, refresh). */
  anonymous?: boolean;
}

export interface UsageCsvFilter {
  from?: string;
  to?: string;
  model?: string;
  contract?: string;
  consumer?: string;
}

/** The codes that say "nothing ran, try again later". */
const RETRY_CODES: ReadonlySet<string> = new Set(['OVERLOADED', 'RATE_LIMITED', 'SERVICE_UNAVAILABLE']);
/** Refresh a little before expiry, so that a request does not leave with a token that expires on its way. */
const REFRESH_MARGIN_MS = 10_000;

const printed = new WeakMap<object, string>();
function queryText(document: TypedDocumentNode<unknown, never>): string {
  let text = printed.get(document);
  if (text === undefined) printed.set(document, (text = print(document)));
  return text;
}

/** Retry-After in seconds: delta-seconds or an HTTP date. */
function retryAfterSeconds(header: string | null | undefined): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

function badResponse(httpStatus: number, what: string): ModelmarketError {
  // A 503 without our JSON (a proxy, say) still means "unavailable, retry".
  const code = httpStatus === 503 ? 'SERVICE_UNAVAILABLE' : 'BAD_RESPONSE';
  return errorFor(`unexpected answer (HTTP ${httpStatus}): ${what}`, { code, httpStatus });
}

interface GraphQLErrorBody {
  message?: unknown;
  extensions?: Record<string, unknown>;
}

/** The typed error of a GraphQL error, with the HTTP answer's status and Retry-After. */
function graphqlError(error: GraphQLErrorBody, httpStatus: number, retryAfter: string | null): ModelmarketError {
  const extensions = { ...error.extensions };
  extensions.retryAfter ??= retryAfterSeconds(retryAfter);
  const code = typeof extensions.code === 'string' ? extensions.code : 'INTERNAL_SERVER_ERROR';
  const reason = typeof extensions.reason === 'string' ? extensions.reason : undefined;
  return errorFor(String(error.message ?? code), { code, reason, httpStatus, extensions });
}

/** The typed error of a /v1 route's `{"error": {"code", "message", …details}}` answer (details: field, reason…). */
function restError(status: number, body: string, header: (name: string) => string | null | undefined) {
  let parsed: { error?: { code?: unknown; message?: unknown } & Record<string, unknown> } | undefined;
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    return badResponse(status, body.slice(0, 200));
  }
  const code = typeof parsed?.error?.code === 'string' ? parsed.error.code : undefined;
  if (!code) return badResponse(status, body.slice(0, 200));
  const { message: _message, ...details } = parsed!.error!;
  const extensions: Record<string, unknown> = { ...details };
  extensions.retryAfter ??= retryAfterSeconds(header('retry-after'));
  // The routes say an access token expired only in WWW-Authenticate (RFC 6750).
  const expired = status === 401 && /error="invalid_token"[^]*expired/.test(header('www-authenticate') ?? '');
  const reason = expired ? 'TOKEN_EXPIRED' : typeof details.reason === 'string' ? details.reason : undefined;
  return errorFor(String(parsed?.error?.message ?? code), { code, reason, httpStatus: status, extensions });
}

export class ModelmarketClient {
  readonly graphqlUrl: string;
  readonly origin: string;
  readonly #options: ModelmarketClientOptions;
  readonly #retry: Required<RetryOptions>;
  #session: SessionTokens | undefined;
  #renewing: Promise<void> | undefined;

  constructor(options: ModelmarketClientOptions) {
    const url = new URL(options.url);
    const base = url.pathname.replace(/\/+$/, '').replace(/\/graphql$/, '');
    this.origin = `${url.origin}${base}`;
    this.graphqlUrl = `${this.origin}/graphql`;
    this.#options = options;
    this.#retry = { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 30_000, ...options.retry };
    if (options.accessToken && options.refreshToken) {
      const { accessToken, refreshToken, expiresAt } = options;
      this.#session = { accessToken, refreshToken, expiresAt };
    }
  }

  /** The current session's tokens (after log-in or a refresh), if any. */
  get session(): SessionTokens | undefined {
    return this.#session && { ...this.#session };
  }

  /**
   * Sends one operation typed by codegen. Idempotent operations are retried (see RequestOptions); an expired
   * access token is refreshed once and the operation sent again.
   */
  async request<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
    options: RequestOptions = {},
  ): Promise<TResult> {
    const body = JSON.stringify({ query: queryText(document as TypedDocumentNode<unknown, never>), variables });
    const send = async (headers: Record<string, string>) => {
      const res = await this.#fetch(this.graphqlUrl, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
        body,
      });
      const text = await res.text();
      let parsed: { data?: TResult | null; errors?: GraphQLErrorBody[] };
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        throw badResponse(res.status, text.slice(0, 200));
      }
      // One root field per operation: any error is that field's.
      const [first] = parsed.errors ?? [];
      if (first) throw graphqlError(first, res.status, res.headers.get('retry-after'));
      if (!parsed.data) throw badResponse(res.status, 'no data');
      return parsed.data;
    };
    return this.#retrying(options.idempotent ?? false, () => (options.anonymous ? send({}) : this.#authorized(send)));
  }

  /** Logs in with e-mail and password; the session is kept (and refreshed) for later calls. */
  async logIn(email: string, password: string): Promise<SessionFragment> {
    const { logIn } = await this.request(LogInDocument, { input: { email, password } }, { anonymous: true });
    await this.#keep(sessionTokens(logIn));
    return logIn;
  }

  /** Ends the session on the server (its refresh token stops working). */
  async logOut(): Promise<boolean> {
    const session = this.#session;
    if (!session) return false;
    this.#session = undefined;
    const { logOut } = await this.request(
      LogOutDocument,
      { input: { refreshToken: session.refreshToken } },
      { anonymous: true },
    );
    return logOut;
  }

  async me() {
    return (await this.request(MeDocument, {}, { idempotent: true })).me;
  }

  async createApiKey(name: string, scopes: ApiScope[]) {
    return (await this.request(CreateApiKeyDocument, { name, scopes })).createApiKey;
  }

  async apiKeys() {
    return (await this.request(MyApiKeysDocument, {}, { idempotent: true })).myApiKeys;
  }

  async revokeApiKey(id: string) {
    return (await this.request(RevokeApiKeyDocument, { id })).revokeApiKey;
  }

  /** One page of the models the caller can see, newest first. */
  async models(filter?: ModelFilter, page: { first?: number; after?: string } = {}) {
    return (await this.request(ModelsDocument, { filter, ...page }, { idempotent: true })).models;
  }

  /** A model with its plans, or null. */
  async model(slug: string) {
    return (await this.request(ModelDocument, { slug }, { idempotent: true })).model;
  }

  /** The plans of one model, or of every visible model (each plan with its model's slug). */
  async plans(model?: string): Promise<(PlanFieldsFragment & { model: string })[]> {
    if (model) {
      const found = await this.model(model);
      if (!found) throw errorFor(`Model ${model} not found`, { code: 'NOT_FOUND' });
      return found.plans.map((plan) => ({ ...plan, model: found.slug }));
    }
    const plans: (PlanFieldsFragment & { model: string })[] = [];
    let after: string | undefined;
    do {
      const { models } = await this.request(ModelsWithPlansDocument, { first: 50, after }, { idempotent: true });
      for (const { node } of models.edges) plans.push(...node.plans.map((plan) => ({ ...plan, model: node.slug })));
      after = models.pageInfo.hasNextPage ? (models.pageInfo.endCursor ?? undefined) : undefined;
    } while (after);
    return plans;
  }

  async createModel(input: CreateModelInput) {
    return (await this.request(CreateModelDocument, { input })).createModel;
  }

  async publishModelVersion(input: PublishModelVersionInput) {
    return (await this.request(PublishModelVersionDocument, { input })).publishModelVersion;
  }

  /**
   * Runs a model. A `requestId` is set when the caller gives none, so that a retry (OVERLOADED, RATE_LIMITED, 503,
   * a lost answer) is answered from the first call and never billed twice.
   */
  async predict(input: PredictInput) {
    const withId = { ...input, requestId: input.requestId ?? randomUUID() };
    const { predict } = await this.request(PredictDocument, { input: withId }, { idempotent: true });
    if (!predict) throw badResponse(200, 'predict answered null without an error');
    return predict;
  }

  /**
   * Queues a prediction (answered QUEUED); poll `prediction(id)`. A `requestId` is set when the caller gives none,
   * so that a retry returns the same prediction rather than queueing and billing a second one.
   */
  async createPrediction(input: CreatePredictionInput) {
    const withId = { ...input, requestId: input.requestId ?? randomUUID() };
    return (await this.request(CreatePredictionDocument, { input: withId }, { idempotent: true })).createPrediction;
  }

  async prediction(id: string) {
    return (await this.request(PredictionDocument, { id }, { idempotent: true })).prediction;
  }

  /** Cancels a QUEUED or RUNNING prediction (its units go back); CONFLICT once it ended. */
  async cancelPrediction(id: string) {
    return (await this.request(CancelPredictionDocument, { id })).cancelPrediction;
  }

  async acceptLicense(planId: string) {
    return (await this.request(AcceptLicenseDocument, { planId })).acceptLicense;
  }

  async contracts() {
    return (await this.request(MyContractsDocument, {}, { idempotent: true })).myContracts;
  }

  async usage(filter?: UsageFilter) {
    return (await this.request(UsageDocument, { filter }, { idempotent: true })).usage;
  }

  /** The usage records as CSV (GET /v1/usage.csv), streamed. */
  async usageCsv(filter: UsageCsvFilter = {}): Promise<Readable> {
    const query = new URLSearchParams(
      Object.entries(filter).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    );
    return this.#retrying(true, () =>
      this.#authorized(async (headers) => {
        const res = await this.#fetch(`${this.origin}/v1/usage.csv?${query}`, { headers });
        if (res.status !== 200) throw restError(res.status, await res.text(), (name) => res.headers.get(name));
        if (!res.body) throw badResponse(res.status, 'no body');
        return Readable.fromWeb(res.body as WebReadableStream);
      }),
    );
  }

  /**
   * Uploads the TensorFlow.js model in `dir` (model.json and the weight files its weightsManifest names) to
   * POST /v1/artifacts, streamed from disk; publish it with publishModelVersion({artifactId: id, …}).
   */
  async uploadArtifact(dir: string, options: UploadOptions = {}): Promise<UploadedArtifact> {
    const files = await readArtifactDir(dir);
    const answer = await this.#authorized(async (headers) => {
      const res = await postArtifact(
        new URL(`${this.origin}/v1/artifacts`),
        headers,
        files,
        options.onProgress ?? (() => undefined),
        this.#options.timeoutMs ?? 60_000,
      );
      const text = res.body.toString('utf8');
      if (res.status !== 201) throw restError(res.status, text, (name) => headerOf(res, name));
      return text;
    });
    try {
      return JSON.parse(answer) as UploadedArtifact;
    } catch {
      throw badResponse(201, answer.slice(0, 200));
    }
  }

  async #fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, signal: AbortSignal.timeout(this.#options.timeoutMs ?? 60_000) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new NetworkError(`${url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`, {
        code: 'NETWORK_ERROR',
        cause: error,
      });
    }
  }

  async #retrying<T>(idempotent: boolean, call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await call();
      } catch (error) {
        const delayMs = idempotent ? this.#retryDelay(error, attempt) : undefined;
        if (delayMs === undefined) throw error;
        this.#options.onRetry?.({ attempt, delayMs, error: error as ModelmarketError });
        await sleep(delayMs);
      }
    }
  }

  /** How long to wait before the next try, or undefined to give up. */
  #retryDelay(error: unknown, attempt: number): number | undefined {
    if (!(error instanceof ModelmarketError) || attempt >= this.#retry.maxAttempts) return undefined;
    const retryable = RETRY_CODES.has(error.code) || error.httpStatus === 503 || error instanceof NetworkError;
    if (!retryable) return undefined;
    const asked = (error.retryAfter ?? 0) * 1000;
    // Never sooner than the server asked; when it asks for longer than we would wait, its error says how long.
    if (asked > this.#retry.maxDelayMs) return undefined;
    const backoff = Math.max(asked, this.#retry.baseDelayMs * 2 ** (attempt - 1));
    // Jitter, so that callers turned away together do not all come back together.
    return Math.min(this.#retry.maxDelayMs, backoff * (1 + Math.random() * 0.25));
  }

  /** Runs `send` with the caller's credentials; an expired access token is renewed once and `send` run again. */
  async #authorized<T>(send: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    if (this.#options.apiKey) return send({ 'x-api-key': this.#options.apiKey });
    const canLogIn = this.#options.email !== undefined && this.#options.password !== undefined;
    // No credentials at all: public operations still work, the others say UNAUTHENTICATED.
    if (!this.#session && !canLogIn) return send({});
    if (!this.#session || (this.#session.expiresAt ?? Infinity) - REFRESH_MARGIN_MS < Date.now()) {
      await this.#renew(this.#session?.accessToken);
    }
    const used = this.#session!.accessToken;
    try {
      return await send({ authorization: `Bearer ${used}` });
    } catch (error) {
      if (!(error instanceof UnauthenticatedError) || error.reason !== 'TOKEN_EXPIRED') throw error;
      await this.#renew(used);
      return send({ authorization: `Bearer ${this.#session!.accessToken}` });
    }
  }

  /** A new access token in place of `stale`: one refresh for all the calls that found it stale. */
  async #renew(stale: string | undefined): Promise<void> {
    if (this.#session && this.#session.accessToken !== stale) return;
    this.#renewing ??= this.#refreshOrLogIn().finally(() => (this.#renewing = undefined));
    await this.#renewing;
  }

  async #refreshOrLogIn(): Promise<void> {
    const { email, password, sharedRefresh } = this.#options;
    const session = this.#session;
    if (session) {
      const refresh = async (refreshToken: string) => {
        const { refreshSession } = await this.request(
          RefreshSessionDocument,
          { input: { refreshToken } },
          { anonymous: true },
        );
        return sessionTokens(refreshSession);
      };
      try {
        if (sharedRefresh) {
          // The coordinator stores what it hands back itself: onTokens is for sessions this client alone keeps.
          this.#session = await sharedRefresh({ ...session }, refresh);
        } else {
          await this.#keep(await refresh(session.refreshToken));
        }
        return;
      } catch (error) {
        // A spent or expired session: log in again when we can, else the caller must.
        if (!(error instanceof UnauthenticatedError) || email === undefined || password === undefined) throw error;
      }
    }
    if (email === undefined || password === undefined) {
      throw errorFor('Not logged in: give an API key, a session or e-mail and password', { code: 'UNAUTHENTICATED' });
    }
    await this.logIn(email, password);
  }

  async #keep(tokens: SessionTokens): Promise<void> {
    this.#session = tokens;
    await this.#options.onTokens?.({ ...tokens });
  }
}

function sessionTokens(payload: SessionFragment): SessionTokens {
  // The client asks for the BODY form, whose answer always holds the refresh token (COOKIE's is null).
  if (!payload.refreshToken) {
    throw errorFor('unexpected answer: the session came without its refresh token', { code: 'BAD_RESPONSE' });
  }
  return {
    accessToken: payload.accessToken,
    refreshToken: payload.refreshToken,
    expiresAt: Date.now() + payload.expiresIn * 1000,
  };
}

function headerOf(res: RawResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
