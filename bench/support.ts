// What the predict benchmarks share: autocannon load over HTTP, a GraphQL client, and a published MNIST MLP
// with an owner and licensed consumers, all through the public API.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import * as tf from '@tensorflow/tfjs';
import pg from 'pg';
import { pino } from 'pino';
import { promisify } from 'node:util';
import { startEmbeddedPostgres } from '../src/db/embedded.js';

const run = promisify(execFile);

export const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
export const MEASURE_MS = Number(process.env.BENCH_MEASURE_MS ?? 4000);

/** One MNIST-sized instance ([28, 28, 1], values in [0, 1]). */
export const digit = Array.from({ length: 28 }, (_, r) =>
  Array.from({ length: 28 }, (_, c) => [((r * 28 + c) % 255) / 255]),
);

export interface BenchDatabases {
  /** A scratch folder for server data, removed by `close`. */
  scratch: string;
  /** Creates an empty database and returns its URL. */
  create(prefix: string): Promise<string>;
  /** Drops what `create` made, stops an embedded server and removes the scratch folder. */
  close(): Promise<void>;
}

/** PostgreSQL for a benchmark: the server at DATABASE_URL, else an embedded one in a scratch folder. */
export async function openBenchDatabases(): Promise<BenchDatabases> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-bench-'));
  const embedded = process.env.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({
        dir: path.join(scratch, 'postgres'),
        password: 'bench',
        database: 'postgres',
        logger: pino({ level: 'warn' }),
      });
  const adminUrl = process.env.DATABASE_URL ?? embedded!.adminUrl;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const created: string[] = [];
  return {
    scratch,
    async create(prefix) {
      const name = `${prefix}_${Date.now()}_${randomBytes(3).toString('hex')}`;
      await admin.query(`CREATE DATABASE "${name}"`);
      created.push(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async close() {
      for (const name of created) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
      await embedded?.stop();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

export interface Result {
  rps: number;
  p50: number;
  p99: number;
}

export const mean = (results: Result[]): Result => ({
  rps: results.reduce((a, r) => a + r.rps, 0) / results.length,
  p50: results.reduce((a, r) => a + r.p50, 0) / results.length,
  p99: results.reduce((a, r) => a + r.p99, 0) / results.length,
});

export const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

/** An API key goes in x-api-key, an access token in Authorization; '' is anonymous. */
function credentialHeaders(credential: string): Record<string, string> {
  if (credential === '') return {};
  return credential.startsWith('mmk_') ? { 'x-api-key': credential } : { authorization: `Bearer ${credential}` };
}

/** HTTP load with autocannon (keep-alive connections, one request in flight per connection). */
export async function httpLoad(url: string, connections: number, credential: string, body: string): Promise<Result> {
  const options = {
    url,
    connections,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', ...credentialHeaders(credential) },
    body,
  };
  await autocannon({ ...options, duration: WARMUP_MS / 1000 });
  const result = await autocannon({ ...options, duration: MEASURE_MS / 1000 });
  if (result.errors || result.non2xx) throw new Error(`${result.errors} errors, ${result.non2xx} non-2xx responses`);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a benchmark client reading known shapes
export type Data = Record<string, any>;

export async function gql(url: string, query: string, variables: unknown, token?: string): Promise<Data> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: Data; errors?: unknown[] };
  if (body.errors || !body.data) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

export const PREDICT = 'mutation P($input: PredictInput!) { predict(input: $input) { outputs { label score } } }';

/** The demo MNIST MLP when trained (npm run demo:train), else the same architecture untrained: same cost. */
export async function mnistModel(): Promise<tf.LayersModel> {
  try {
    const dir = path.resolve('demo/artifacts/mnist-mlp');
    const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as {
      modelTopology: object;
      weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
    };
    const weights = await readFile(path.join(dir, 'model.weights.bin'));
    return await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
        weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      }),
    );
  } catch {
    return tf.sequential({
      layers: [
        tf.layers.flatten({ inputShape: [28, 28, 1] }),
        tf.layers.dense({ units: 128, activation: 'relu' }),
        tf.layers.dropout({ rate: 0.2 }),
        tf.layers.dense({ units: 10, activation: 'softmax' }),
      ],
    });
  }
}

/** A consumer with an API key under a plan (no quota, a generous rate limit): the metered path. */
export async function licensedKey(
  url: string,
  ownerToken: string,
  slug: string,
  rateLimitPerMinute: number | null,
): Promise<string> {
  const plan = await gql(
    url,
    'mutation P($i: CreateLicensePlanInput!) { createLicensePlan(input: $i) { id } }',
    {
      i: {
        model: slug,
        name: 'Bench',
        pricePerPrediction: '0.001',
        currency: 'EUR',
        period: 'MONTH',
        rateLimitPerMinute,
        commercialUse: true,
        downloadAllowed: false,
        requiresApproval: false,
      },
    },
    ownerToken,
  );
  const consumer = await gql(url, 'mutation S($i: SignUpInput!) { signUp(input: $i) { accessToken } }', {
    i: {
      email: `consumer-${randomBytes(4).toString('hex')}@example.com`,
      password: 'benchmark passphrase',
      displayName: 'C',
      role: 'CONSUMER',
    },
  });
  const token = consumer.signUp.accessToken as string;
  await gql(url, 'mutation A($p: ID!) { acceptLicense(planId: $p) { id } }', { p: plan.createLicensePlan.id }, token);
  const key = await gql(url, 'mutation K { createApiKey(name: "bench", scopes: [PREDICT]) { secret } }', {}, token);
  return key.createApiKey.secret as string;
}

export async function prepare(url: string, model: tf.LayersModel): Promise<{ token: string; slug: string }> {
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`;
  const auth = await gql(url, 'mutation S($i: SignUpInput!) { signUp(input: $i) { accessToken } }', {
    i: { email, password: 'benchmark passphrase', displayName: 'Bench', role: 'OWNER' },
  });
  const token = auth.signUp.accessToken as string;
  const origin = new URL(url).origin;
  const saved = await model.save(
    tf.io.http(`${origin}/v1/artifacts`, { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
  );
  const artifact = (await saved.responses![0]!.json()) as { id: string };
  const slug = `mnist-bench-${randomBytes(3).toString('hex')}`;
  await gql(
    url,
    'mutation C($i: CreateModelInput!) { createModel(input: $i) { id } }',
    { i: { slug, name: 'MNIST', task: 'IMAGE_CLASSIFICATION', visibility: 'PUBLIC' } },
    token,
  );
  await gql(
    url,
    'mutation V($i: PublishModelVersionInput!) { publishModelVersion(input: $i) { id } }',
    {
      i: {
        model: slug,
        version: '1.0.0',
        artifactId: artifact.id,
        watermark: false,
        labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
      },
    },
    token,
  );
  return { token, slug };
}

/**
 * A detached checkout of `revision` in `scratch`, ready to run: it shares this tree's node_modules when its
 * package-lock.json is the same, else gets its own `npm ci` (a revision from before a dependency change).
 */
export async function checkout(revision: string, scratch: string): Promise<{ dir: string; commit: string }> {
  const { stdout } = await run('git', ['rev-parse', '--verify', `${revision}^{commit}`]);
  const commit = stdout.trim();
  const dir = path.join(scratch, 'baseline');
  await run('git', ['worktree', 'add', '--detach', dir, commit]);
  const sameLock =
    (await readFile(path.join(dir, 'package-lock.json'), 'utf8')) === (await readFile('package-lock.json', 'utf8'));
  if (sameLock) {
    await symlink(path.resolve('node_modules'), path.join(dir, 'node_modules'));
    await run('npm', ['run', 'generate'], { cwd: dir });
  } else {
    console.log(`${revision} has other dependencies: npm ci in its checkout`);
    await run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
  }
  return { dir, commit };
}

export async function removeCheckout(dir: string): Promise<void> {
  await run('git', ['worktree', 'remove', '--force', dir]);
}

/** The framework ceiling (bench/bare-apollo.ts) as a child process. */
export function startBareApollo(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-apollo.ts'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /READY (\S+)/.exec(output);
      if (match) resolve({ child, url: match[1]! });
    });
    child.once('exit', (code) => reject(new Error(`bare Apollo exited (${code}):\n${output}`)));
  });
}

/**
 * One connection, one request at a time, timed by this process to the microsecond (autocannon's latencies are
 * whole milliseconds): for concurrency-1 latency rows.
 */
export async function sequentialLoad(url: string, credential: string, body: string): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const headers = { 'content-type': 'application/json', ...credentialHeaders(credential) };
  const call = () =>
    new Promise<void>((resolve, reject) => {
      const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
        if (response.statusCode !== 200) reject(new Error(`HTTP ${response.statusCode}`));
        response.resume().on('end', resolve).on('error', reject);
      });
      request.on('error', reject);
      request.end(body);
    });
  try {
    return await timeLoop(call);
  } finally {
    agent.destroy();
  }
}

/** Back-to-back calls for WARMUP_MS then MEASURE_MS, phases read from the clock (microtask-only loops starve timers). */
export async function timeLoop(call: () => Promise<void>): Promise<Result> {
  const latencies: number[] = [];
  const measureFrom = performance.now() + WARMUP_MS;
  const measureTo = measureFrom + MEASURE_MS;
  for (let now = performance.now(); now < measureTo; now = performance.now()) {
    await call();
    const done = performance.now();
    if (now >= measureFrom && done <= measureTo) latencies.push(done - now);
  }
  latencies.sort((a, b) => a - b);
  return {
    rps: (latencies.length / MEASURE_MS) * 1000,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}
