// Evaluation's measurements (issue 13, part "evaluation"): a ~50 MB JSONL data set uploaded and an evaluation of the
// demo MNIST MLP on it, on a server in this process, with the event loop's delay sampled meanwhile (1 ms
// resolution). The client runs in the same process, so the delays are upper bounds of the server's own. Prints the
// targets beside the measurements; exits 1 if one is missed.
//
// Usage: tsx bench/lifecycle-evaluation.ts [--megabytes 50]   (DATABASE_URL: a server that allows CREATE DATABASE;
// without it an embedded PostgreSQL runs in a scratch folder)
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startApplication } from '../src/app.js';
import { parseConfig } from '../src/config.js';
import { demoMnist, mnistJsonl, publishDemoMnist, uploadDataset } from '../test/evaluation/support.js';
import { signUp } from '../test/support/fixtures.js';
import { gqlAt, type TestServer } from '../test/support/server.js';
import { openBenchDatabases } from './support.js';

/** The longest any one event-loop turn may hold the loop during an upload or an evaluation (milliseconds). */
const MAX_LOOP_DELAY_MS = 50;
const P99_LOOP_DELAY_MS = 10;

const { values } = parseArgs({ options: { megabytes: { type: 'string', default: '50' } } });
const megabytes = Number(values.megabytes);

const databases = await openBenchDatabases();
const { evalSet } = await demoMnist();
const app = await startApplication(
  parseConfig({
    DATABASE_URL: await databases.create('mm_bench_evaluation'),
    DATA_DIR: path.join(databases.scratch, 'data'),
    PORT: '0',
    HOST: '127.0.0.1',
    APP_SECRET: randomBytes(32).toString('hex'),
    LOG_LEVEL: 'warn',
    PASSWORD_SCRYPT_LOG2N: '12',
    DATASET_MAX_BYTES: String(Math.ceil((megabytes + 8) * 1024 * 1024)),
  }),
);
const origin = `http://127.0.0.1:${app.port}`;
// The test helpers take a server by its URLs and GraphQL client.
const server = {
  origin,
  url: `${origin}/graphql`,
  gql: (q, v, a) => gqlAt(`${origin}/graphql`, q, v, a),
} as TestServer;

interface Row {
  what: string;
  measured: string;
  target: string;
  ok: boolean;
}
const rows: Row[] = [];

async function sampled<T>(run: () => Promise<T>): Promise<{ result: T; ms: number; maxMs: number; p99Ms: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const started = performance.now();
  const result = await run();
  const ms = performance.now() - started;
  histogram.disable();
  return { result, ms, maxMs: histogram.max / 1e6, p99Ms: histogram.percentile(99) / 1e6 };
}

function loopRows(what: string, maxMs: number, p99Ms: number) {
  rows.push({
    what: `${what}: event-loop delay, max`,
    measured: `${maxMs.toFixed(1)} ms`,
    target: `≤ ${MAX_LOOP_DELAY_MS} ms`,
    ok: maxMs <= MAX_LOOP_DELAY_MS,
  });
  rows.push({
    what: `${what}: event-loop delay, p99`,
    measured: `${p99Ms.toFixed(1)} ms`,
    target: `≤ ${P99_LOOP_DELAY_MS} ms`,
    ok: p99Ms <= P99_LOOP_DELAY_MS,
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
  loopRows('upload', upload.maxMs, upload.p99Ms);

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
  loopRows('evaluation', evaluation.maxMs, evaluation.p99Ms);
} finally {
  await app.close();
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
