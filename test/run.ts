// `npm test`'s runner: one PostgreSQL for the whole run (DATABASE_URL when set, else an embedded one in a
// temporary folder), a migrated template database, then node:test over every test file. Each test server
// gets its own database cloned from the template, so runs and tests never see each other's data.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.js';
import { applyMigrations } from '../src/db/migrate.js';
import { applyTensorflowDefaults } from '../src/config.js';
import { withDatabase } from './support/database-url.js';

/**
 * The files that take longest (measured: 15–60 s each, most of them starting server processes), run first so that
 * the two workers finish together instead of one running a long file alone at the end; the rest follow by name.
 * A file missing from this list only runs later.
 */
const SLOW_FILES = [
  // First: it trains the demo's MNIST model once for the run (test/support/demo-artifacts.ts), which demo.test.ts reuses.
  'test/readme-walkthrough.test.ts',
  // Trains the demo's spam classifier once (about 3 minutes on a fresh machine), beside the MNIST training above.
  'test/explanations/text.test.ts',
  'test/front-door.test.ts',
  // The three journeys in one browser, publishing the real MNIST model with its 500 held-out digits: about 40 s.
  'test/web/journeys.test.ts',
  'test/models/graph-model.test.ts',
  'test/client/cli.test.ts',
  'test/models/images.test.ts',
  'test/watermark/product.test.ts',
  'test/watermark/quantized.test.ts',
  'test/inference/engine.test.ts',
  'test/metering/crash-recovery.test.ts',
  'test/evaluation/crash.test.ts',
  'test/lifecycle/optimize-api.test.ts',
  'test/inference/attributions.test.ts',
  'test/metering/concurrency.test.ts',
  'test/embedded-root.test.ts',
  'test/server/database-faults.test.ts',
  'test/server/frozen-stop.test.ts',
  'test/server/graceful-stop.test.ts',
  'test/server/retry-status.test.ts',
  'test/auth/roles.test.ts',
  'test/auth/admin-bootstrap.test.ts',
];

function slowestFirst(a: string, b: string): number {
  const rank = (file: string) => {
    const index = SLOW_FILES.indexOf(file);
    return index === -1 ? SLOW_FILES.length : index;
  };
  return rank(a) - rank(b) || a.localeCompare(b);
}

const runId = `mm_test_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const files = process.argv.slice(2);
// Test files run at once: two on two cores; `npm run test:native` runs one (on this 2-core machine, two files at
// once, each with native TensorFlow, had HTTP connections reset in the image-input tests; alone they pass).
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2);

async function main(): Promise<number> {
  // Test servers run in the test processes, which inherit these: libtensorflow as npm start configures it.
  applyTensorflowDefaults();
  let embedded: EmbeddedDatabase | undefined;
  let scratch: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-test-'));
    embedded = await startEmbeddedPostgres({
      dir: path.join(scratch, 'postgres'),
      password: randomBytes(16).toString('hex'),
      database: 'postgres',
      logger: pino({ level: 'warn' }),
    });
    adminUrl = embedded.adminUrl;
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const template = `${runId}_template`;
  try {
    await admin.query(`CREATE DATABASE "${template}"`);
    const pool = new pg.Pool({ connectionString: withDatabase(adminUrl, template), max: 1 });
    await applyMigrations(pool);
    await pool.end();

    // Node 20's test runner does not expand globs: list the files here.
    const testFiles = files.length
      ? files
      : readdirSync('test', { recursive: true, encoding: 'utf8' })
          .filter((file) => file.endsWith('.test.ts'))
          .map((file) => path.join('test', file))
          .sort(slowestFirst);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...testFiles],
        {
          stdio: 'inherit',
          env: { ...process.env, MM_TEST_ADMIN_URL: adminUrl, MM_TEST_TEMPLATE: template, MM_TEST_RUN_ID: runId },
        },
      );
      child.on('exit', (status) => resolve(status ?? 1));
    });
    return code;
  } finally {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      `${runId}%`,
    ]);
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    await admin.end();
    await embedded?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
