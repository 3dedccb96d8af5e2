// Seeds exactly what a test needs, through the public API, with unique identities per test.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { GraphQLResponse, TestServer } from './server.js';

export const AUTH_FIELDS = 'accessToken refreshToken expiresIn tokenType user { id email displayName role createdAt }';
export const SIGN_UP = `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { ${AUTH_FIELDS} } }`;
export const LOG_IN = `mutation LogIn($email: String!, $password: String!) { logIn(email: $email, password: $password) { ${AUTH_FIELDS} } }`;
export const CREATE_API_KEY = `mutation CreateKey($name: String!, $scopes: [ApiScope!]!) {
  createApiKey(name: $name, scopes: $scopes) { secret apiKey { id name prefix scopes createdAt lastUsedAt revokedAt } } }`;

export const uniqueEmail = (tag = 'user') => `${tag}-${randomBytes(5).toString('hex')}@example.com`;

export interface SignedUpUser {
  id: string;
  email: string;
  password: string;
  token: string;
  refreshToken: string;
}

export async function signUp(
  server: TestServer,
  options: { role?: 'CONSUMER' | 'OWNER'; email?: string; password?: string } = {},
): Promise<SignedUpUser> {
  const email = options.email ?? uniqueEmail(options.role?.toLowerCase());
  const password = options.password ?? `pw-${randomBytes(8).toString('hex')}`;
  const res = await server.gql(SIGN_UP, {
    input: { email, password, displayName: 'Test User', role: options.role ?? 'CONSUMER' },
  });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  const payload = res.data!.signUp;
  return { id: payload.user.id, email, password, token: payload.accessToken, refreshToken: payload.refreshToken };
}

export async function logIn(server: TestServer, email: string, password: string): Promise<SignedUpUser> {
  const res = await server.gql(LOG_IN, { email, password });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  const payload = res.data!.logIn;
  return { id: payload.user.id, email, password, token: payload.accessToken, refreshToken: payload.refreshToken };
}

export async function createApiKey(server: TestServer, token: string, scopes: string[], name = 'test key') {
  const res = await server.gql(CREATE_API_KEY, { name, scopes }, { token });
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createApiKey as { secret: string; apiKey: { id: string; prefix: string; scopes: string[] } };
}

/** Asserts the response failed with exactly this error code (and returns the error). */
export function expectError(res: GraphQLResponse, code: string) {
  assert.ok(res.errors?.length, `expected ${code}, got data ${JSON.stringify(res.data)}`);
  assert.equal(res.errors[0]!.extensions?.code, code, JSON.stringify(res.errors));
  return res.errors[0]!;
}

/** Row counts of the identity tables, to prove a rejected input changed nothing. */
export async function tableCounts(server: TestServer): Promise<Record<string, number>> {
  const tables = ['users', 'sessions', 'refresh_tokens', 'api_keys'];
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const { rows } = await server.sql.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    counts[table] = Number(rows[0]!.n);
  }
  return counts;
}
