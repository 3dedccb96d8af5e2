// The console's first page, measured (`npm run bench:console`): one server process on a fresh database with 40
// models, then Debian's Chromium loading `/` cold (a new browser context: no cache, no cookies) and warm (the
// same context again), 15 times each. "Interactive" is when the marketplace's first page of model cards is on
// screen with its search form (the page has fetched its data and React has drawn it), from navigation start.
// Prints the medians and the 95th percentiles beside the 1 s budget, and the bundle's gzipped size beside its
// 300 kB budget. Not a test: it prints numbers.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { launchBrowser } from '../test/support/browser.js';
import { consoleBundle } from '../test/support/console-bundle.js';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';
import { CONSOLE_JS_BUDGET_GZIP_BYTES } from '../web/src/budget.js';
import { gql, openBenchDatabases } from './support.js';

const RUNS = Number(process.env.BENCH_CONSOLE_RUNS ?? 15);
const MODELS = 40;
const BUDGET_MS = 1000;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function seed(url: string): Promise<void> {
  const auth = await gql(url, 'mutation S($i: SignUpInput!) { signUp(input: $i) { accessToken } }', {
    i: {
      email: `bench-${randomBytes(4).toString('hex')}@example.com`,
      password: 'benchmark passphrase',
      displayName: 'Bench Owner',
      role: 'OWNER',
    },
  });
  const token = auth.signUp.accessToken as string;
  for (let i = 0; i < MODELS; i++) {
    await gql(
      url,
      'mutation C($i: CreateModelInput!) { createModel(input: $i) { id } }',
      {
        i: {
          slug: `bench-model-${i}`,
          name: `Bench model ${i}`,
          description: 'A model for the console benchmark.',
          task: 'IMAGE_CLASSIFICATION',
          tags: ['bench', `group-${i % 4}`],
          visibility: 'PUBLIC',
        },
      },
      token,
    );
  }
}

async function main(): Promise<void> {
  const databases = await openBenchDatabases();
  const { child, url } = await startServerProcess({
    DATABASE_URL: await databases.create('mm_bench_console'),
    DATA_DIR: path.join(databases.scratch, 'console-data'),
    APP_SECRET: randomBytes(32).toString('hex'),
    SIGNUP_MAX_PER_IP: '1000',
  });
  const browser = await launchBrowser();
  try {
    await seed(url);
    const origin = new URL(url).origin;
    const cold: number[] = [];
    const warm: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const context = await browser.newContext({ baseURL: origin });
      const page = await context.newPage();
      for (const times of [cold, warm]) {
        await page.goto('/', { waitUntil: 'commit' });
        await page.locator('.model-card').first().waitFor();
        await page.getByRole('search', { name: 'Models' }).waitFor();
        // The page's own clock starts at navigation start.
        times.push(await page.evaluate<number>('performance.now()'));
      }
      await context.close();
    }
    const bundle = consoleBundle();
    const line = (name: string, times: number[]) => {
      const [median, p95] = [percentile(times, 50), percentile(times, 95)];
      const verdict = p95 <= BUDGET_MS ? 'within' : 'OVER';
      return `${name.padEnd(6)} median ${median.toFixed(0).padStart(4)} ms   p95 ${p95.toFixed(0).padStart(4)} ms   (${verdict} the ${BUDGET_MS} ms budget at p95)`;
    };
    console.log(
      `Console first page (marketplace, ${MODELS} models, ${RUNS} loads each), from navigation start to interactive:`,
    );
    console.log(line('cold', cold));
    console.log(line('warm', warm));
    console.log(
      `bundle: ${(bundle.jsGzipBytes / 1024).toFixed(1)} kB gzip of JavaScript (budget ${CONSOLE_JS_BUDGET_GZIP_BYTES / 1024} kB), ${(bundle.cssGzipBytes / 1024).toFixed(1)} kB of CSS, in ${bundle.files.length} files`,
    );
  } finally {
    await browser.close();
    await stopServerProcess(child);
    await databases.close();
  }
}

await main();
