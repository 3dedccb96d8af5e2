// Batch predictions beside synchronous traffic (part of `npm run bench`; alone: `npm run bench:batch`): one server
// process, a licensed consumer's 50,000-row MNIST batch (BENCH_BATCH_ROWS) through the default configuration
// (BATCH_CHUNK_SIZE, BATCH_MAX_CONCURRENT_CHUNKS), and licensed predict at c=8 measured without, then while, the
// batch runs. Prints the batch throughput (rows/s, from its startedAt to its completedAt) and predict's p99 with
// and without it (goal: at most 2×). Not a test: it prints numbers.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as tf from '@tensorflow/tfjs';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';
import {
  digit,
  gql,
  httpLoad,
  licensedKey,
  mnistModel,
  openBenchDatabases,
  prepare,
  PREDICT,
  type BenchDatabases,
  type Data,
  type Result,
} from './support.js';

const ROWS = Number(process.env.BENCH_BATCH_ROWS ?? 50_000);
const CONNECTIONS = 8;

/** `count` MNIST-like rows (flat [784], mostly zeros as digits are) as a JSONL data set of inputs. */
function digitsJsonl(count: number): Buffer {
  let state = 7;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const pixels = Array.from({ length: 784 }, () => (next() < 0.8 ? 0 : Math.round(next() * 100) / 100));
    lines.push(`{"input":[${pixels.join(',')}]}`);
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

async function batchOf(url: string, key: string, id: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({
      query: 'query B($id: ID!) { batchPrediction(id: $id) { status processed total startedAt completedAt } }',
      variables: { id },
    }),
  });
  const body = (await response.json()) as { data: Data };
  return body.data.batchPrediction as Data;
}

export interface BatchBenchResult {
  rowsPerSecond: number;
  without: Result;
  during: Result;
  /** Whether the batch still ran when the measurement under load ended. */
  overlapped: boolean;
}

export async function benchBatch(databases: BenchDatabases, model: tf.LayersModel): Promise<BatchBenchResult> {
  const dataset = digitsJsonl(ROWS);
  const server = await startServerProcess({
    DATABASE_URL: await databases.create('mm_bench_batch'),
    DATA_DIR: path.join(databases.scratch, 'batch-data'),
    APP_SECRET: randomBytes(32).toString('hex'),
    DATASET_MAX_BYTES: String(Math.max(64 * 1024 ** 2, dataset.length)),
    LOG_LEVEL: 'info',
  });
  try {
    const { token, slug } = await prepare(server.url, model);
    const key = await licensedKey(server.url, token, slug, null);
    const body = JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: [digit] } } });
    await gql(server.url, PREDICT, { input: { model: slug, inputs: [digit] } }, token);
    const without = await httpLoad(server.url, CONNECTIONS, key, body);

    const origin = new URL(server.url).origin;
    const uploaded = await fetch(`${origin}/v1/datasets`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-api-key': key },
      body: dataset,
    });
    if (uploaded.status !== 201) throw new Error(`upload: ${uploaded.status} ${await uploaded.text()}`);
    const { id: datasetId } = (await uploaded.json()) as { id: string };
    const created = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({
        query: 'mutation C($input: CreateBatchPredictionInput!) { createBatchPrediction(input: $input) { id } }',
        variables: { input: { model: slug, dataset: datasetId } },
      }),
    });
    const batchId = ((await created.json()) as { data: Data }).data.createBatchPrediction.id as string;
    while ((await batchOf(server.url, key, batchId)).processed === 0) await new Promise((r) => setTimeout(r, 50));
    const during = await httpLoad(server.url, CONNECTIONS, key, body);
    let batch = await batchOf(server.url, key, batchId);
    const overlapped = batch.status === 'RUNNING';
    while (batch.status === 'RUNNING' || batch.status === 'QUEUED') {
      await new Promise((r) => setTimeout(r, 250));
      batch = await batchOf(server.url, key, batchId);
    }
    if (batch.status !== 'SUCCEEDED') throw new Error(`batch ended ${batch.status}`);
    const seconds = (Date.parse(batch.completedAt) - Date.parse(batch.startedAt)) / 1000;
    return { rowsPerSecond: batch.total / seconds, without, during, overlapped };
  } finally {
    await stopServerProcess(server.child);
  }
}

export function printBatchBench(result: BatchBenchResult): void {
  const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
  console.log(`\nBatch predictions (${ROWS} MNIST rows, licensed; predict: licensed, c=${CONNECTIONS}):\n`);
  console.log('| row | value |');
  console.log('| --- | ---: |');
  console.log(`| batch throughput (rows/s) | ${fmt(result.rowsPerSecond, 0)} |`);
  console.log(
    `| predict req/s without / with the batch | ${fmt(result.without.rps, 0)} / ${fmt(result.during.rps, 0)} |`,
  );
  console.log(`| predict p99 ms without the batch | ${fmt(result.without.p99, 2)} |`);
  console.log(`| predict p99 ms with the batch running | ${fmt(result.during.p99, 2)} |`);
  const ratio = result.during.p99 / result.without.p99;
  console.log(
    `\n  predict p99 with / without a batch: ${fmt(ratio, 2)}  [goal ≤ 2: ${ratio <= 2 ? 'met' : 'NOT met'}]`,
  );
  if (!result.overlapped)
    console.log('  (the batch ended before the measurement under load did: raise BENCH_BATCH_ROWS)');
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const databases = await openBenchDatabases();
  try {
    printBatchBench(await benchBatch(databases, await mnistModel()));
  } finally {
    await databases.close();
  }
}
