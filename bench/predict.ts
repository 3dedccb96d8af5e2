// `npm run bench`: predict throughput and latency over real HTTP against real server processes, beside the
// ceilings that bound it, all measured in one run (see README, "Performance"):
//   bare      the same tfjs backend in this process, model.predict at batch = concurrency (inference ceiling)
//   batched   the server as configured (dynamic micro-batching)
//   unbatched the same server with INFERENCE_BATCHING=false
//   trivial   an authenticated `{ me { id } }` on the batched server (framework ceiling)
// Each connection sends one-instance predict calls back to back (autocannon, in this process). Not a test:
// it prints numbers and ratios.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';
import {
  digit,
  gql,
  httpLoad,
  licensedKey,
  mean,
  MEASURE_MS,
  mnistModel,
  openBenchDatabases,
  percentile,
  prepare,
  PREDICT,
  WARMUP_MS,
  type Result,
} from './support.js';

const LEVELS = [1, 8, 64];

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

async function main(): Promise<void> {
  setWasmPaths(
    path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/',
  );
  await tf.setBackend('wasm');
  const databases = await openBenchDatabases();
  const common = {
    DATABASE_URL: await databases.create('mm_bench'),
    DATA_DIR: path.join(databases.scratch, 'data'),
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

  await databases.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
