// A real Modelmarket server on its own fresh database (cloned from the run's migrated template), for tests
// that talk to it over HTTP like any client.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startApplication, type Application } from '../../src/app.js';
import { parseConfig } from '../../src/config.js';
import { withDatabase } from './database-url.js';

function testEnvironment(): { adminUrl: string; template: string; runId: string } {
  const { MM_TEST_ADMIN_URL, MM_TEST_TEMPLATE, MM_TEST_RUN_ID } = process.env;
  if (!MM_TEST_ADMIN_URL || !MM_TEST_TEMPLATE || !MM_TEST_RUN_ID) {
    throw new Error('Run the tests with `npm test` (test/run.ts prepares the database)');
  }
  return { adminUrl: MM_TEST_ADMIN_URL, template: MM_TEST_TEMPLATE, runId: MM_TEST_RUN_ID };
}

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, any> }[];
  headers: Headers;
}

export interface Credentials {
  token?: string;
  apiKey?: string;
  headers?: Record<string, string>;
}

export interface TestServer {
  app: Application;
  url: string;
  origin: string;
  databaseUrl: string;
  /** The configuration the server runs with, as environment variables (for scripts run beside it). */
  env: Record<string, string>;
  /** A pg pool on the server's database, for assertions on what was stored. */
  sql: pg.Pool;
  gql<T = Record<string, any>>(
    query: string,
    variables?: Record<string, unknown>,
    auth?: Credentials,
  ): Promise<GraphQLResponse<T>>;
  close(): Promise<void>;
  /** Stops the server but keeps its database, for a restart test; the run's clean-up drops it. */
  stopKeepingDatabase(): Promise<void>;
}

/** Creates an empty, migrated database for one test server. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const { adminUrl, template, runId } = testEnvironment();
  const name = `${runId}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  await admin.end();
  return {
    url: withDatabase(adminUrl, name),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      // pg's pool.end() resolves before its clients' sockets have closed; forcing the drop while a backend
      // is still ending makes the server send that client an error it no longer listens for.
      const deadline = Date.now() + 2000;
      const connected = async () =>
        (await client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name])).rows[0].n;
      while ((await connected()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

export function authHeaders(auth: Credentials = {}): Record<string, string> {
  return {
    ...(auth.token ? { authorization: `Bearer ${auth.token}` } : {}),
    ...(auth.apiKey ? { 'x-api-key': auth.apiKey } : {}),
    ...auth.headers,
  };
}

/** A GraphQL request to the server at `url` (another server process's, say). */
export async function gqlAt<T = Record<string, any>>(
  url: string,
  query: string,
  variables?: Record<string, unknown>,
  auth?: Credentials,
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(auth) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: any; errors?: any[] };
  return { status: response.status, data: body.data, errors: body.errors, headers: response.headers };
}

/**
 * Starts a server on a fresh database. `env` overrides configuration exactly as environment variables would. Passwords are
 * hashed at N=2^12 unless a test asks otherwise: the OWASP cost (2^17) is covered by its own tests, and
 * every sign-up at full cost would make the suite minutes slower on two cores.
 */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  // A given DATABASE_URL (another test server's, say) is used as is and left in place at close.
  const database = env.DATABASE_URL
    ? { url: env.DATABASE_URL, drop: async () => undefined }
    : await createTestDatabase();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-server-'));
  const serverEnv: Record<string, string> = {
    DATABASE_URL: database.url,
    DATABASE_POOL_SIZE: '5',
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    APP_SECRET: randomBytes(32).toString('hex'),
    LOG_LEVEL: 'silent',
    PASSWORD_SCRYPT_LOG2N: '12',
    // Every test account signs up from 127.0.0.1; the per-address cap has its own test.
    SIGNUP_MAX_PER_IP: '1000000',
    // npm run test:native runs every server on the native backend.
    ...(process.env.INFERENCE_BACKEND ? { INFERENCE_BACKEND: process.env.INFERENCE_BACKEND } : {}),
    ...env,
  };
  const config = parseConfig(serverEnv);
  const app = await startApplication(config);
  const sql = new pg.Pool({ connectionString: database.url, max: 2 });
  const origin = `http://127.0.0.1:${app.port}`;
  const url = `${origin}/graphql`;
  return {
    app,
    url,
    origin,
    databaseUrl: database.url,
    env: serverEnv,
    sql,
    gql: (query, variables, auth) => gqlAt(url, query, variables, auth),
    async close() {
      await app.close();
      await sql.end();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
    async stopKeepingDatabase() {
      await app.close();
      await sql.end();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A POST whose headers promise a 1 GiB body that never comes: the server's answer, without sending any of it. */
export function unsentBody(server: TestServer, route: string, headers: Record<string, string>) {
  return new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(`${server.origin}${route}`, {
      method: 'POST',
      headers: { 'content-length': String(1 << 30), ...headers },
    });
    req.once('response', (res) => {
      res.resume();
      resolve(res);
      req.destroy();
    });
    req.once('error', reject);
    req.flushHeaders();
  });
}
