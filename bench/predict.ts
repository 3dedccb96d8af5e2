// `npm run bench`: predict throughput and latency over real HTTP against real server processes, beside the
// ceilings that bound it, all measured in one run (see README, "Performance"):
//   bare      the same tfjs backend in this process, model.predict at batch = concurrency (inference ceiling)
//   batched   the server as configured (dynamic micro-batching)
//   unbatched the same server with INFERENCE_BATCHING=false
//   trivial   an authenticated `{ me { id } }` on the batched server (framework ceiling)
// Each connection sends one-instance predict calls back to back (autocannon, in this process). Not a test:
// it prints numbers and ratios.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';

const LEVELS = [1, 8, 64];
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const MEASURE_MS = Number(process.env.BENCH_MEASURE_MS ?? 4000);

interface Result {
  rps: number;
  p50: number;
  p99: number;
}

const mean = (results: Result[]): Result => ({
  rps: results.reduce((a, r) => a + r.rps, 0) / results.length,
  p50: results.reduce((a, r) => a + r.p50, 0) / results.length,
  p99: results.reduce((a, r) => a + r.p99, 0) / results.length,
});

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

/** The bare tfjs loop: back-to-back calls, phases read from the clock (microtask-only loops starve timers). */
async function timeLoop(call: () => Promise<void>): Promise<Result> {
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

/** HTTP load with autocannon (keep-alive connections, one request in flight per connection). */
async function httpLoad(url: string, connections: number, credential: string, body: string): Promise<Result> {
  const auth = credential.startsWith('mmk_') ? { 'x-api-key': credential } : { authorization: `Bearer ${credential}` };
  const options = {
    url,
    connections,
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', ...auth },
    body,
  };
  await autocannon({ ...options, duration: WARMUP_MS / 1000 });
  const result = await autocannon({ ...options, duration: MEASURE_MS / 1000 });
  if (result.errors || result.non2xx) throw new Error(`${result.errors} errors, ${result.non2xx} non-2xx responses`);
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99 };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a benchmark client reading known shapes
type Data = Record<string, any>;

async function gql(url: string, query: string, variables: unknown, token?: string): Promise<Data> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: Data; errors?: unknown[] };
  if (body.errors || !body.data) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const PREDICT = 'mutation P($input: PredictInput!) { predict(input: $input) { outputs { label score } } }';

/** The demo MNIST MLP when trained (npm run demo:train), else the same architecture untrained: same cost. */
async function mnistModel(): Promise<tf.LayersModel> {
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
async function licensedKey(
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

async function prepare(url: string, model: tf.LayersModel): Promise<{ token: string; slug: string }> {
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

async function main(): Promise<void> {
  setWasmPaths(
    path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/',
  );
  await tf.setBackend('wasm');
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-bench-'));
  let adminUrl = process.env.DATABASE_URL;
  const embedded = adminUrl
    ? undefined
    : await startEmbeddedPostgres({
        dir: path.join(scratch, 'postgres'),
        password: 'bench',
        database: 'postgres',
        logger: pino({ level: 'warn' }),
      });
  adminUrl ??= embedded!.adminUrl;
  const database = `mm_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${database}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const common = {
    DATABASE_URL: url.toString(),
    DATA_DIR: path.join(scratch, 'data'),
    APP_SECRET: randomBytes(32).toString('hex'),
  };

  const model = await mnistModel();
  const wideModel = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [28, 28, 1] }),
      tf.layers.dense({ units: 2048, activation: 'relu' }),
      tf.layers.dense({ units: 2048, activation: 'relu' }),
      tf.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  const digit = Array.from({ length: 28 }, (_, r) =>
    Array.from({ length: 28 }, (_, c) => [((r * 28 + c) % 255) / 255]),
  );
  const rows: Record<string, Result> = {};

  console.log(
    `tfjs backend here: ${tf.getBackend()}; CPUs: ${os.availableParallelism()}; warm-up ${WARMUP_MS} ms, measure ${MEASURE_MS} ms per row`,
  );
  for (const batch of LEVELS) {
    const input = tf.tensor4d(Array.from({ length: batch }, () => digit).flat(3), [batch, 28, 28, 1]);
    rows[`bare@${batch}`] = await timeLoop(async () => {
      const out = model.predict(input) as tf.Tensor;
      await out.data();
      out.dispose();
    });
    input.dispose();
    // Per instance, for comparison with per-request rates.
    rows[`bare@${batch}`]!.rps *= batch;
  }

  for (const mode of ['batched', 'unbatched'] as const) {
    const { child, url: api } = await startServerProcess({
      ...common,
      INFERENCE_BATCHING: mode === 'batched' ? 'true' : 'false',
    });
    try {
      const { token, slug } = await prepare(api, model);
      const predictBody = JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: [digit] } } });
      await gql(api, PREDICT, { input: { model: slug, inputs: [digit] } }, token);
      for (const c of LEVELS) rows[`${mode}@${c}`] = await httpLoad(api, c, token, predictBody);
      // The same comparison where inference, not HTTP and GraphQL, is the cost: a wide MLP.
      const heavy = await prepare(api, wideModel);
      const heavyBody = JSON.stringify({
        query: PREDICT,
        variables: { input: { model: heavy.slug, inputs: [digit] } },
      });
      await gql(api, PREDICT, { input: { model: heavy.slug, inputs: [digit] } }, heavy.token);
      rows[`${mode}-wide@64`] = await httpLoad(api, 64, heavy.token, heavyBody);
      if (mode === 'batched') {
        const trivialBody = JSON.stringify({ query: '{ me { id } }' });
        for (const c of LEVELS) rows[`trivial@${c}`] = await httpLoad(api, c, token, trivialBody);
        // Owner and licensed calls alternate, so a noisy neighbour affects both alike.
        const apiKey = await licensedKey(api, token, slug, 1_000_000);
        const unlimitedKey = await licensedKey(api, token, slug, null);
        const owner: Result[] = [];
        const licensed: Result[] = [];
        const unlimited: Result[] = [];
        for (let round = 0; round < 2; round++) {
          owner.push(await httpLoad(api, 64, token, predictBody));
          licensed.push(await httpLoad(api, 64, apiKey, predictBody));
          unlimited.push(await httpLoad(api, 64, unlimitedKey, predictBody));
        }
        rows['owner@64'] = mean(owner);
        rows['licensed@64'] = mean(licensed);
        rows['licensed-no-rate-limit@64'] = mean(unlimited);
        const readyz = (await (await fetch(api.replace('/graphql', '/readyz'))).json()) as {
          inference: { backend: string };
        };
        console.log(`server inference backend: ${readyz.inference.backend}`);
      }
    } finally {
      await stopServerProcess(child);
    }
  }

  const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
  console.log('\n| mode | concurrency (bare: batch) | req/s (bare: instances/s) | p50 ms | p99 ms |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const mode of ['bare', 'batched', 'unbatched', 'trivial']) {
    for (const c of LEVELS) {
      const r = rows[`${mode}@${c}`]!;
      console.log(`| ${mode} | ${c} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} |`);
    }
  }
  const licensed = rows['licensed@64']!;
  const owner = rows['owner@64']!;
  const rowsAt64: [string, Result][] = [
    ['owner predict (access token, no contract)', owner],
    ['licensed predict (API key, metered)', licensed],
    ['licensed, no rate limit', rows['licensed-no-rate-limit@64']!],
    ['wide MLP 784-2048-2048-10, batched', rows['batched-wide@64']!],
    ['wide MLP 784-2048-2048-10, unbatched', rows['unbatched-wide@64']!],
  ];
  for (const [label, r] of rowsAt64) {
    console.log(`| ${label} | 64 | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} |`);
  }
  const batched64 = rows['batched@64']!.rps;
  console.log('\nRatios (targets in brackets):');
  console.log(`  batched / unbatched at 64:        ${fmt(batched64 / rows['unbatched@64']!.rps, 2)}×  [≥ 5×]`);
  console.log(
    `  same, wide MLP:                   ${fmt(rows['batched-wide@64']!.rps / rows['unbatched-wide@64']!.rps, 2)}×`,
  );
  console.log(`  batched / trivial query at 64:    ${fmt((100 * batched64) / rows['trivial@64']!.rps, 0)}%  [≥ 50%]`);
  console.log(
    `  p50 at 1 − bare inference (batch 1): ${fmt(rows['batched@1']!.p50 - rows['bare@1']!.p50, 2)} ms  [≤ 3 ms]`,
  );
  console.log(
    `  metering overhead at 64 (1 − licensed / owner): ${fmt(100 * (1 - licensed.rps / owner.rps), 0)}%  [< 15%]`,
  );

  await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
  await admin.end();
  await embedded?.stop();
  await rm(scratch, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
