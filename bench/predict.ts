// `npm run bench`: the hot path against the framework ceiling, and predict throughput and latency, over real
// HTTP against real server processes, all measured in one run (see README, "Performance"):
//   bare Apollo  a bare Apollo Server 5 `startStandaloneServer` answering `{ me { id } }` from memory
//                (bench/bare-apollo.ts): the framework ceiling every hot-path row is divided by
//   bare tfjs    the server's tfjs backend in this process, model.predict at batch = concurrency (inference ceiling)
//   batched      the server as configured (dynamic micro-batching)
//   unbatched    the same server with INFERENCE_BATCHING=false
//   batch        a 50,000-row batch prediction's throughput, and predict's p99 without and while it runs (bench/batch.ts)
// The hot-path rows run in BENCH_ROUNDS rounds (default 2) that interleave the bare server with ours, so a
// shared machine's drift hits both alike. Servers log at info (production's default) to a pipe this process
// reads. Not a test: it prints numbers and ratios.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../test/support/server-process.js';
import { benchBatch, printBatchBench } from './batch.js';
import {
  digit,
  gql,
  httpLoad,
  licensedKey,
  mean,
  MEASURE_MS,
  mnistModel,
  openBenchDatabases,
  prepare,
  PREDICT,
  sequentialLoad,
  startBareApollo,
  timeLoop,
  WARMUP_MS,
  type Result,
} from './support.js';

const LEVELS = [1, 8, 64];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

/** This process's tfjs on the backend the server reports, so "bare inference" is the same arithmetic. */
async function useBackend(name: string): Promise<void> {
  if (name === 'tensorflow') {
    // Present only after `npm run setup:native`; imported by name so TypeScript needs no types for it.
    const nativePackage = '@tensorflow/tfjs-node';
    await import(nativePackage);
  } else if (name === 'wasm') {
    setWasmPaths(
      path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/',
    );
  }
  await tf.setBackend(name);
  await tf.ready();
}

interface Server {
  process: ServerProcess;
  ownerToken: string;
  slug: string;
  /** A licensed consumer's API key: contract, quota, rate limit and usage record on every call. */
  apiKey: string;
  predictBody: string;
  /** The same instance as one flat array of 784 numbers: a third of the JSON to parse (see README). */
  flatPredictBody: string;
}

async function startServer(env: Record<string, string>, model: tf.LayersModel): Promise<Server> {
  const process = await startServerProcess({ ...env, LOG_LEVEL: 'info' });
  const { token, slug } = await prepare(process.url, model);
  await gql(process.url, PREDICT, { input: { model: slug, inputs: [digit] } }, token);
  return {
    process,
    ownerToken: token,
    slug,
    apiKey: await licensedKey(process.url, token, slug, 1_000_000),
    predictBody: JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: [digit] } } }),
    flatPredictBody: JSON.stringify({
      query: PREDICT,
      variables: { input: { model: slug, inputs: [digit.flat(2)] } },
    }),
  };
}

async function main(): Promise<void> {
  const databases = await openBenchDatabases();
  const common = { DATA_DIR: path.join(databases.scratch, 'data'), APP_SECRET: randomBytes(32).toString('hex') };
  // The model is built on wasm; should the server run another backend, tfjs moves its weights on first use.
  await useBackend('wasm');
  const model = await mnistModel();
  const bare = await startBareApollo();
  const batched = await startServer({ ...common, DATABASE_URL: await databases.create('mm_bench') }, model);
  const unbatched = await startServer(
    { ...common, DATABASE_URL: await databases.create('mm_bench_unbatched'), INFERENCE_BATCHING: 'false' },
    model,
  );
  const readyz = (await (await fetch(batched.process.url.replace('/graphql', '/readyz'))).json()) as {
    inference: { backend: string };
  };
  const backend = readyz.inference.backend;
  if (backend !== 'wasm') await useBackend(backend);
  const rows: Record<string, Result> = {};

  try {
    console.log(
      `server backend: ${backend}; CPUs: ${os.availableParallelism()}; warm-up ${WARMUP_MS} ms, measure ${MEASURE_MS} ms per row; ${ROUNDS} rounds of the hot-path rows`,
    );
    const me = JSON.stringify({ query: '{ me { id } }' });
    const hotPath: [string, () => Promise<Result>][] = [
      ['bare Apollo `{ me { id } }`', () => httpLoad(bare.url, 64, 'bare', me)],
      ['anonymous `{ __typename }`', () => httpLoad(batched.process.url, 64, '', '{"query":"{ __typename }"}')],
      ['`{ me { id } }`, session token', () => httpLoad(batched.process.url, 64, batched.ownerToken, me)],
      ['`{ me { id } }`, API key', () => httpLoad(batched.process.url, 64, batched.apiKey, me)],
      [
        'licensed predict (API key, metered), batched',
        () => httpLoad(batched.process.url, 64, batched.apiKey, batched.predictBody),
      ],
      [
        'licensed predict, the instance as a flat [784] array, batched',
        () => httpLoad(batched.process.url, 64, batched.apiKey, batched.flatPredictBody),
      ],
      [
        'licensed predict (API key, metered), INFERENCE_BATCHING=false',
        () => httpLoad(unbatched.process.url, 64, unbatched.apiKey, unbatched.predictBody),
      ],
    ];
    const samples = new Map<string, Result[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, measure] of round % 2 === 0 ? hotPath : [...hotPath].reverse()) {
        samples.set(label, [...(samples.get(label) ?? []), await measure()]);
      }
    }
    for (const [label, results] of samples) rows[label] = mean(results);

    for (const batch of LEVELS) {
      const input = tf.tensor4d(Array.from({ length: batch }, () => digit).flat(3), [batch, 28, 28, 1]);
      rows[`bare tfjs@${batch}`] = await timeLoop(async () => {
        const out = model.predict(input) as tf.Tensor;
        await out.data();
        out.dispose();
      });
      input.dispose();
      // Per instance, for comparison with per-request rates.
      rows[`bare tfjs@${batch}`]!.rps *= batch;
    }
    rows['licensed@1'] = await sequentialLoad(batched.process.url, batched.apiKey, batched.predictBody);
    for (const [mode, server] of [
      ['batched', batched],
      ['unbatched', unbatched],
    ] as const) {
      for (const c of LEVELS) {
        rows[`${mode}@${c}`] =
          c === 1
            ? await sequentialLoad(server.process.url, server.ownerToken, server.predictBody)
            : await httpLoad(server.process.url, c, server.ownerToken, server.predictBody);
      }
    }
  } finally {
    bare.child.kill();
    await stopServerProcess(batched.process.child);
    await stopServerProcess(unbatched.process.child);
  }

  const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
  const ceiling = rows['bare Apollo `{ me { id } }`']!.rps;
  console.log('\nHot path, c=64 (means of the rounds):\n');
  console.log('| row | req/s | × bare Apollo | p50 ms | p99 ms |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const label of Object.keys(rows).filter((key) => !/@\d+$/.test(key))) {
    const r = rows[label]!;
    console.log(`| ${label} | ${fmt(r.rps, 0)} | ${fmt(r.rps / ceiling, 2)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} |`);
  }
  console.log('\nPredict by concurrency (owner, access token; c=1 timed per call by this process):\n');
  console.log('| mode | concurrency (bare: batch) | req/s (bare: instances/s) | p50 ms | p99 ms |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const mode of ['bare tfjs', 'batched', 'unbatched']) {
    for (const c of LEVELS) {
      const r = rows[`${mode}@${c}`]!;
      console.log(`| ${mode} | ${c} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 3)} | ${fmt(r.p99, 3)} |`);
    }
  }
  const licensed1 = rows['licensed@1']!;
  console.log(
    `| licensed (API key, metered) | 1 | ${fmt(licensed1.rps, 0)} | ${fmt(licensed1.p50, 3)} | ${fmt(licensed1.p99, 3)} |`,
  );

  const ratio = (label: string) => rows[label]!.rps / ceiling;
  const check = (value: number, goal: number, atLeast = true) =>
    `${fmt(value, 2)}  [goal ${atLeast ? '≥' : '≤'} ${goal}: ${(atLeast ? value >= goal : value <= goal) ? 'met' : 'NOT met'}]`;
  console.log('\nGoals (issue 11):');
  console.log(`  anonymous / bare Apollo:                   ${check(ratio('anonymous `{ __typename }`'), 0.7)}`);
  console.log(`  me, session token / bare Apollo:           ${check(ratio('`{ me { id } }`, session token'), 0.5)}`);
  console.log(`  me, API key / bare Apollo:                 ${check(ratio('`{ me { id } }`, API key'), 0.5)}`);
  const licensedBatched = rows['licensed predict (API key, metered), batched']!.rps;
  console.log(`  licensed predict / bare Apollo:            ${check(licensedBatched / ceiling, 0.3)}`);
  const unbatchedRps = rows['licensed predict (API key, metered), INFERENCE_BATCHING=false']!.rps;
  console.log(`  licensed predict, batched / unbatched:     ${check(licensedBatched / unbatchedRps, 2)}`);
  console.log(
    `  licensed predict p50 at c=1 − bare inference at batch 1 (ms): ${check(licensed1.p50 - rows['bare tfjs@1']!.p50, 1, false)}`,
  );
  // Alone on the machine: after the other servers stopped.
  printBatchBench(await benchBatch(databases, model));
  await databases.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
