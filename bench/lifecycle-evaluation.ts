// Evaluation's measurements (issue 13, part "evaluation"): a ~50 MB JSONL data set uploaded and an evaluation of the
// demo MNIST MLP on it, on a server process (`npm start`), with the server's own event-loop delay read from its
// /metrics (mm_nodejs_eventloop_lag_max_seconds: the longest delay since the previous scrape, 10 ms resolution).
// Prints the targets beside the measurements; exits 1 if one is missed.
//
// Usage: tsx bench/lifecycle-evaluation.ts [--megabytes 50]   (DATABASE_URL: a server that allows CREATE DATABASE;
// without it an embedded PostgreSQL runs in a scratch folder; BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=…"
// profiles the server)
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { demoMnist, mnistJsonl, publishDemoMnist, uploadDataset } from '../test/evaluation/support.js';
import { signUp } from '../test/support/fixtures.js';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';
import { gqlAt, type TestServer } from '../test/support/server.js';
import { openBenchDatabases } from './support.js';

/** The longest any one event-loop turn of the server may hold its loop during an upload or an evaluation. */
const MAX_LOOP_DELAY_MS = 50;
const METRICS_TOKEN = randomBytes(16).toString('hex');

const { values } = parseArgs({ options: { megabytes: { type: 'string', default: '50' } } });
const megabytes = Number(values.megabytes);

const databases = await openBenchDatabases();
const { evalSet } = await demoMnist();
const serverProcess = await startServerProcess(
  {
    DATABASE_URL: await databases.create('mm_bench_evaluation'),
    DATA_DIR: path.join(databases.scratch, 'data'),
    APP_SECRET: randomBytes(32).toString('hex'),
    PASSWORD_SCRYPT_LOG2N: '12',
    METRICS_TOKEN,
    DATASET_MAX_BYTES: String(Math.ceil((megabytes + 8) * 1024 * 1024)),
  },
  [],
  process.cwd(),
  process.env.BENCH_SERVER_NODE_ARGS ? process.env.BENCH_SERVER_NODE_ARGS.split(' ') : [],
);
const origin = new URL(serverProcess.url).origin;
// The test helpers take a server by its URLs and GraphQL client.
const server = {
  origin,
  url: serverProcess.url,
  gql: (query, variables, auth) => gqlAt(serverProcess.url, query, variables, auth),
} as TestServer;

/** The server's longest event-loop delay since the previous call (prom-client resets it on every scrape). */
async function serverLoopMaxMs(): Promise<number> {
  const response = await fetch(`${origin}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const line = (await response.text()).split('\n').find((l) => l.startsWith('mm_nodejs_eventloop_lag_max_seconds '));
  return Number(line!.split(' ')[1]) * 1000;
}

interface Row {
  what: string;
  measured: string;
  target: string;
  ok: boolean;
}
const rows: Row[] = [];

async function sampled<T>(run: () => Promise<T>): Promise<{ result: T; ms: number; maxMs: number }> {
  await serverLoopMaxMs();
  const started = performance.now();
  const result = await run();
  const ms = performance.now() - started;
  return { result, ms, maxMs: await serverLoopMaxMs() };
}

function loopRow(what: string, maxMs: number) {
  rows.push({
    what: `${what}: server event-loop delay, max`,
    measured: `${maxMs.toFixed(1)} ms`,
    target: `≤ ${MAX_LOOP_DELAY_MS} ms`,
    ok: maxMs <= MAX_LOOP_DELAY_MS,
  });
}

try {
  const owner = await signUp(server, { role: 'OWNER' });
  const auth = { token: owner.token };
  const { slug } = await publishDemoMnist(server, auth);
  // The 2,000 held-out digits, repeated to the size asked for.
  const block = mnistJsonl(evalSet, evalSet.count);
  const copies = Math.max(1, Math.round((megabytes * 1024 * 1024) / Buffer.byteLength(block)));
  const body = Buffer.from(block.repeat(copies));
  const examples = copies * evalSet.count;

  const upload = await sampled(() => uploadDataset(server, auth, body));
  if (upload.result.status !== 201) throw new Error(`upload refused: ${JSON.stringify(upload.result.body)}`);
  rows.push({
    what: `upload ${(body.length / 1024 / 1024).toFixed(1)} MB JSONL (${examples} digits)`,
    measured: `${(upload.ms / 1000).toFixed(2)} s`,
    target: '(measured)',
    ok: true,
  });
  loopRow('upload', upload.maxMs);

  const evaluation = await sampled(async () => {
    const started = await server.gql(
      `mutation E($input: EvaluateModelVersionInput!) { evaluateModelVersion(input: $input) { id } }`,
      { input: { model: slug, dataset: upload.result.body.id } },
      auth,
    );
    if (started.errors) throw new Error(JSON.stringify(started.errors));
    const id = started.data!.evaluateModelVersion.id as string;
    for (;;) {
      const res = await server.gql(
        `{ evaluation(id: "${id}") { status error { message } report { accuracy durationMs } } }`,
        {},
        auth,
      );
      const { status, error, report } = res.data!.evaluation;
      if (status === 'SUCCEEDED') return report as { accuracy: number; durationMs: number };
      if (status !== 'QUEUED' && status !== 'RUNNING') throw new Error(`evaluation ${status}: ${error?.message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  rows.push({
    what: `evaluate ${examples} digits (validation pass + run, chunks of 64)`,
    measured: `${(evaluation.result.durationMs / 1000).toFixed(2)} s, ${Math.round(examples / (evaluation.result.durationMs / 1000))} examples/s, accuracy ${evaluation.result.accuracy.toFixed(4)}`,
    target: '(measured)',
    ok: true,
  });
  loopRow('evaluation', evaluation.maxMs);
} finally {
  await stopServerProcess(serverProcess.child);
  await databases.close();
}

const width = Math.max(...rows.map((r) => r.what.length));
const measuredWidth = Math.max(...rows.map((r) => r.measured.length));
console.log(`${'evaluation'.padEnd(width)}  ${'measured'.padEnd(measuredWidth)}  target`);
for (const row of rows) {
  console.log(
    `${row.what.padEnd(width)}  ${row.measured.padEnd(measuredWidth)}  ${row.target}${row.ok ? '' : '  ✖ MISSED'}`,
  );
}
process.exitCode = rows.every((r) => r.ok) ? 0 : 1;
