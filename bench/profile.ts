// `npm run bench:profile -- <row> [--rev <git revision>]`: where a request's time goes. Starts a real server
// process (this tree, or a checkout of a revision) under `node --cpu-prof`, loads it with one row of the
// hot-path benchmark (autocannon, c=64), and splits the main thread's samples taken during the measured window
// by stage: the package (or this project's folder) whose code was running, native frames charged to their
// nearest JavaScript caller. Prints µs of main-thread time per request for each stage, and how idle the thread
// was. Rows: anonymous, me-session, me-key, predict-licensed, predict-owner. Not a test: it prints numbers.
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import autocannon from 'autocannon';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';
import {
  checkout,
  digit,
  gql,
  licensedKey,
  mnistModel,
  openBenchDatabases,
  prepare,
  PREDICT,
  removeCheckout,
} from './support.js';

const ROWS = ['anonymous', 'me-session', 'me-key', 'predict-licensed', 'predict-owner'] as const;
type Row = (typeof ROWS)[number];
const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 8);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The stage a frame's code belongs to, or undefined for a native frame (charged to its caller). */
function stageOf(frame: ProfileNode['callFrame']): string | undefined {
  const { url, functionName } = frame;
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'V8 and native, no JS caller';
  if (!url) return undefined;
  if (url.startsWith('node:')) {
    const module = url.slice(5);
    if (/^(_http|http|net|stream|internal\/(streams|http|stream_base|js_stream))/.test(module)) return 'node http/net';
    if (/crypto/.test(module)) return 'node crypto';
    return 'node, other';
  }
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (packageMatch) {
    const name = packageMatch[1]!;
    if (
      /^(express|router|body-parser|raw-body|send|finalhandler|proxy-addr|type-is|content-type|@as-integrations)/.test(
        name,
      )
    )
      return 'express';
    if (/^(pino|sonic-boom|fast-redact|@pinojs|thread-stream|on-exit-leak-free|quick-format)/.test(name))
      return 'logging (pino)';
    if (/^@apollo\//.test(name)) return '@apollo/server';
    if (name === 'graphql') return 'graphql-js';
    if (/^@escape\.tech/.test(name)) return 'graphql-armor';
    if (/^(jsonwebtoken|jws|jwa|ecdsa-sig-formatter)$/.test(name)) return 'jsonwebtoken';
    if (/^(pg|pg-protocol|pg-pool|pg-types|postgres-)/.test(name)) return 'pg driver';
    if (/^@prisma\//.test(name)) return 'prisma';
    if (name === 'prom-client') return 'prom-client';
    return name;
  }
  const source = /\/src\/([^/]+)\//.exec(url);
  if (source) return `src/${source[1]}`;
  return 'other';
}

/** Time per stage, and per function (`stage: name url:line`) for the detail BENCH_PROFILE_TOP asks for. */
function breakdown(profile: CpuProfile, fromUs: number, toUs: number): [Map<string, number>, Map<string, number>] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stageById = new Map<number, string>();
  const resolveStage = (id: number): string => {
    const known = stageById.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const stage = stageOf(node.callFrame) ?? (up === undefined ? 'native, no caller' : resolveStage(up));
    stageById.set(id, stage);
    return stage;
  };
  const totals = new Map<string, number>();
  const functions = new Map<string, number>();
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i]!;
    at += delta;
    if (at < fromUs || at > toUs) continue;
    // Each sample stands for the time since the previous one.
    const stage = resolveStage(profile.samples[i]!);
    totals.set(stage, (totals.get(stage) ?? 0) + delta);
    const { functionName, url } = byId.get(profile.samples[i]!)!.callFrame;
    const name = `${stage}: ${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '')}`;
    functions.set(name, (functions.get(name) ?? 0) + delta);
  }
  return [totals, functions];
}

/** CLOCK_MONOTONIC in µs: the clock V8 stamps profile samples with, on Linux, in every process. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

async function main(): Promise<void> {
  const row = process.argv[2] as Row;
  const revIndex = process.argv.indexOf('--rev');
  const revision = revIndex > 0 ? process.argv[revIndex + 1] : undefined;
  if (!ROWS.includes(row)) {
    console.error(`usage: npm run bench:profile -- <${ROWS.join('|')}> [--rev <git revision>]`);
    process.exit(2);
  }
  const databases = await openBenchDatabases();
  const tree = revision ? await checkout(revision, databases.scratch) : undefined;
  const profileDir = path.join(databases.scratch, 'profiles');
  const server = await startServerProcess(
    {
      DATABASE_URL: await databases.create('mm_profile'),
      DATA_DIR: path.join(databases.scratch, 'data'),
      APP_SECRET: randomBytes(32).toString('hex'),
      // Production's default: one access-log line per request, here read and dropped by this process.
      LOG_LEVEL: 'info',
    },
    [],
    tree?.dir ?? process.cwd(),
    ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
  );
  try {
    const { token, slug } = await prepare(server.url, await mnistModel());
    const predict = JSON.stringify({ query: PREDICT, variables: { input: { model: slug, inputs: [digit] } } });
    await gql(server.url, PREDICT, { input: { model: slug, inputs: [digit] } }, token);
    const apiKey =
      row === 'me-key' || row === 'predict-licensed' ? await licensedKey(server.url, token, slug, null) : '';
    const load: Record<Row, { headers: Record<string, string>; body: string }> = {
      anonymous: { headers: {}, body: JSON.stringify({ query: '{ __typename }' }) },
      'me-session': { headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ query: '{ me { id } }' }) },
      'me-key': { headers: { 'x-api-key': apiKey }, body: JSON.stringify({ query: '{ me { id } }' }) },
      'predict-licensed': { headers: { 'x-api-key': apiKey }, body: predict },
      'predict-owner': { headers: { authorization: `Bearer ${token}` }, body: predict },
    };
    const options = {
      url: server.url,
      connections: 64,
      method: 'POST' as const,
      headers: { 'content-type': 'application/json', ...load[row].headers },
      body: load[row].body,
    };
    await autocannon({ ...options, duration: 2 });
    const from = monotonicUs();
    const result = await autocannon({ ...options, duration: SECONDS });
    const to = monotonicUs();
    if (result.errors || result.non2xx) throw new Error(`${result.errors} errors, ${result.non2xx} non-2xx`);
    await stopServerProcess(server.child);
    // The main thread's profile: CPU.<date>.<time>.<pid>.<thread id 0>.<seq>.cpuprofile.
    const file = (await readdir(profileDir)).find((name) => name.includes(`.${server.child.pid}.0.`));
    if (!file) throw new Error('the server wrote no main-thread profile');
    const profile = JSON.parse(await readFile(path.join(profileDir, file), 'utf8')) as CpuProfile;
    const [totals, functions] = breakdown(profile, from, to);
    const requests = result.requests.total;
    const windowUs = to - from;
    const label = revision ? `${revision} (${tree!.commit.slice(0, 7)})` : 'this working tree';
    console.log(`\n${row} on ${label}: ${Math.round(requests / SECONDS)} req/s under the profiler, c=64, ${SECONDS} s`);
    console.log('\n| stage | µs per request | % of the window |');
    console.log('| --- | ---: | ---: |');
    const sorted = [...totals].sort((a, b) => b[1] - a[1]);
    let busy = 0;
    for (const [stage, us] of sorted) {
      if (stage !== 'idle') busy += us;
      console.log(`| ${stage} | ${(us / requests).toFixed(1)} | ${((100 * us) / windowUs).toFixed(1)} |`);
    }
    console.log(
      `| **busy, all stages** | **${(busy / requests).toFixed(1)}** | ${((100 * busy) / windowUs).toFixed(1)} |`,
    );
    const top = Number(process.env.BENCH_PROFILE_TOP ?? 0);
    if (top > 0) {
      console.log(`\nThe ${top} functions with the most self time (µs per request):`);
      for (const [name, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top)) {
        console.log(`  ${(us / requests).toFixed(1).padStart(7)}  ${name}`);
      }
    }
  } finally {
    if (server.child.exitCode === null) await stopServerProcess(server.child);
    if (tree) await removeCheckout(tree.dir);
    await databases.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
