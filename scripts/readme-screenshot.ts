// `npm run screenshot:readme`: the picture the README opens with. Starts `npm start -- --demo` (training the demo
// models first when demo/artifacts is empty) on a scratch embedded database, logs the demo consumer into the
// console in Chromium, draws a 7 on the MNIST model's "Try it" canvas, predicts, and saves the model page as
// docs/console-model-page.png.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEMO_CONSUMER } from '../demo/publish.js';
import { drawSeven, launchBrowser, logInBrowser } from '../test/support/browser.js';
import { startServerProcess, stopServerProcess } from '../test/support/server-process.js';

const OUTPUT = path.resolve('docs/console-model-page.png');
const SLUG = 'mnist-mlp';

async function modelPublished(url: string): Promise<boolean> {
  // While --demo trains, the server is busy with it: a refused or reset request is a "not yet".
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: `{ model(slug: "${SLUG}") { plansConnection { totalCount } } }` }),
  }).catch(() => null);
  if (!response) return false;
  const body = (await response.json()) as { data?: { model: { plansConnection: { totalCount: number } } | null } };
  return (body.data?.model?.plansConnection.totalCount ?? 0) > 0;
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-screenshot-'));
const { child, url } = await startServerProcess({ DATA_DIR: dataDir, DATABASE_URL: '', LOG_LEVEL: 'warn' }, ['--demo']);
const browser = await launchBrowser();
try {
  // --demo publishes after the server is up (and trains first on a fresh clone): wait for its plans.
  const deadline = Date.now() + 10 * 60_000;
  while (!(await modelPublished(url))) {
    if (Date.now() > deadline) throw new Error('the demo models were not published within 10 minutes');
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  const context = await browser.newContext({ baseURL: new URL(url).origin, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await logInBrowser(page, DEMO_CONSUMER.email, DEMO_CONSUMER.password);
  await page.goto(`/models/${SLUG}`);
  const tryIt = page.getByRole('region', { name: /Try it/ });
  await drawSeven(page, tryIt.getByRole('img', { name: /Drawing area/ }));
  await tryIt.getByRole('button', { name: 'Predict' }).click();
  await tryIt.getByRole('status').locator('.try-it-label strong').waitFor();
  await page.evaluate('window.scrollTo(0, 0)');
  await page.screenshot({ path: OUTPUT, fullPage: true });
  console.log(`saved ${path.relative(process.cwd(), OUTPUT)}`);
} finally {
  await browser.close();
  await stopServerProcess(child);
  await rm(dataDir, { recursive: true, force: true });
}
