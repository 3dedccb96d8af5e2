// `npm run bench:ab -- <git revision>`: the predict rows of `npm run bench`, for this working tree (B) against a
// git revision (A), side by side in one run. Each side is a real server process on its own database; rows are
// measured in rounds that alternate A and B, so the drift of a shared machine hits both alike. Prints each row's
// mean for A and B and the ratio B / A. Not a test: it prints numbers.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { startServerProcess, stopServerProcess, type ServerProcess } from '../test/support/server-process.js';
import {
  checkout,
  digit,
  gql,
  httpLoad,
  licensedKey,
  mean,
  mnistModel,
  openBenchDatabases,
  prepare,
  PREDICT,
  removeCheckout,
  type Result,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Side {
  name: 'A' | 'B';
  label: string;
  server: ServerProcess;
  /** Credential and request body per row. */
  rows: Map<string, { credential: string; body: string; connections: number }>;
}

async function startSide(name: Side['name'], label: string, cwd: string, env: Record<string, string>): Promise<Side> {
  const server = await startServerProcess(env, [], cwd);
  const model = await mnistModel();
  const { token, slug } = await prepare(server.url, model);
  await gql(server.url, PREDICT, { input: { model: slug, inputs: [digit] } }, token);
  const apiKey = await licensedKey(server.url, token, slug, 1_000_000);
  const predict = JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: [digit] } } });
  const trivial = JSON.stringify({ query: '{ me { id } }' });
  const rows = new Map([
    ['owner predict, batched @1', { credential: token, body: predict, connections: 1 }],
    ['owner predict, batched @8', { credential: token, body: predict, connections: 8 }],
    ['owner predict, batched @64', { credential: token, body: predict, connections: 64 }],
    ['licensed predict (API key, metered) @64', { credential: apiKey, body: predict, connections: 64 }],
    ['trivial { me { id } } @64', { credential: token, body: trivial, connections: 64 }],
  ]);
  return { name, label, server, rows };
}

async function main(): Promise<void> {
  const revision = process.argv[2];
  if (!revision) {
    console.error('usage: npm run bench:ab -- <git revision to compare this working tree against>');
    process.exit(2);
  }
  const databases = await openBenchDatabases();
  const baseline = await checkout(revision, databases.scratch);
  const sides: Side[] = [];
  try {
    for (const [name, cwd, label] of [
      ['A', baseline.dir, `${revision} (${baseline.commit.slice(0, 7)})`],
      ['B', process.cwd(), 'this working tree'],
    ] as const) {
      sides.push(
        await startSide(name, label, cwd, {
          DATABASE_URL: await databases.create(`mm_bench_${name.toLowerCase()}`),
          DATA_DIR: path.join(databases.scratch, `data-${name}`),
          APP_SECRET: randomBytes(32).toString('hex'),
        }),
      );
    }
    const results = new Map<string, Result[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const row of sides[0]!.rows.keys()) {
        // Alternate which side goes first, so neither always runs on a warmer (or more tired) machine.
        for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
          const { credential, body, connections } = side.rows.get(row)!;
          const key = `${side.name}:${row}`;
          results.set(key, [
            ...(results.get(key) ?? []),
            await httpLoad(side.server.url, connections, credential, body),
          ]);
        }
      }
      console.log(`round ${round + 1} of ${ROUNDS} done`);
    }
    console.log(`\nA = ${sides[0]!.label}; B = ${sides[1]!.label}; ${ROUNDS} alternating rounds, means:\n`);
    console.log('| row | A req/s | B req/s | B / A | A p50 ms | B p50 ms | A p99 ms | B p99 ms |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const row of sides[0]!.rows.keys()) {
      const a = mean(results.get(`A:${row}`)!);
      const b = mean(results.get(`B:${row}`)!);
      console.log(
        `| ${row} | ${a.rps.toFixed(0)} | ${b.rps.toFixed(0)} | ${(b.rps / a.rps).toFixed(3)} | ${a.p50.toFixed(1)} | ${b.p50.toFixed(1)} | ${a.p99.toFixed(1)} | ${b.p99.toFixed(1)} |`,
      );
    }
  } finally {
    for (const side of sides) await stopServerProcess(side.server.child);
    await removeCheckout(baseline.dir);
    await databases.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
