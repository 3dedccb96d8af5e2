// The three journeys, end to end in a real browser and through the console only (the API is read to
// check what the pages did, never to do a step): an owner publishes the demo's real MNIST model from its files
// and offers a plan that needs approval; a consumer finds it, requests access, is approved by the owner, makes an
// API key, draws a 7 that the model reads, and sees it in the usage chart and the CSV; the admin finds the
// approval in the audit log and verifies the chain. The tests run in order and share the accounts and the model.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { decodeEvalSet } from '../../src/evaluation/eval-set.js';
import {
  accessibilityViolations,
  drawSeven,
  launchBrowser,
  logInBrowser,
  openConsole,
  screenshot,
  type ConsolePage,
} from '../support/browser.js';
import { demoArtifacts } from '../support/demo-artifacts.js';
import { uniqueEmail } from '../support/fixtures.js';
import { uniqueSlug } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const ADMIN = { email: uniqueEmail('admin'), password: 'journey admin passphrase' };
const OWNER = { email: uniqueEmail('owner'), password: 'journey owner passphrase', displayName: 'Olga Owner' };
const CONSUMER = {
  email: uniqueEmail('consumer'),
  password: 'journey consumer passphrase',
  displayName: 'Carl Consumer',
};
const MODEL_NAME = 'Journey digits';
const PLAN_NAME = 'Reviewed';

/** The demo publisher's card: the signature (28×28×1 grey image, unit scaling) and labels the page is given. */
interface DemoCard {
  signature: unknown;
  labels: string[];
}

/** Screenshots the page and holds it to no serious or critical axe violations. */
async function checkPage(page: Page, name: string): Promise<void> {
  await screenshot(page, `journey-${name}`);
  assert.deepEqual(await accessibilityViolations(page), [], name);
}

/** Signs up through the console's sign-up page; the signed-in navigation shows after it. */
async function signUpInBrowser(
  page: Page,
  user: { email: string; password: string; displayName: string },
  role: 'owner' | 'consumer',
): Promise<void> {
  await page.goto('/signup');
  await page.getByRole('heading', { name: 'Sign up' }).waitFor();
  await checkPage(page, `sign-up-${role}`);
  await page.getByLabel('Display name').fill(user.displayName);
  await page.getByLabel('E-mail address').fill(user.email);
  await page.getByLabel('Password (at least 10 characters)').fill(user.password);
  await page.getByRole('radio', { name: role === 'owner' ? /owner/ : /consumer/ }).check();
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

describe('journeys', () => {
  let server: TestServer;
  let browser: Browser;
  let folder: string;
  let demoDir: string;
  /** The owner's browser stays open from the first journey to approve in the second. */
  let owner: ConsolePage;
  let slug: string;

  before(async () => {
    let artifacts: string;
    [server, browser, folder, artifacts] = await Promise.all([
      startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password }),
      launchBrowser(),
      mkdtemp(path.join(os.tmpdir(), 'journeys-')),
      demoArtifacts(),
    ]);
    demoDir = path.join(artifacts, 'mnist-mlp');
  });
  after(async () => {
    await owner?.context.close();
    await Promise.all([browser?.close(), server?.close(), folder && rm(folder, { recursive: true, force: true })]);
  });

  it('owner: signs up, creates a model, publishes the MNIST model from its files, and offers a plan needing approval', async () => {
    owner = await openConsole(browser, server.origin);
    const { page } = owner;
    await signUpInBrowser(page, OWNER, 'owner');
    await page.waitForURL('**/owner/models');
    await page.getByRole('heading', { name: 'My models' }).waitFor();
    await checkPage(page, 'owner-my-models');

    await page.getByRole('link', { name: 'Create a model' }).click();
    await page.getByRole('heading', { name: 'Create a model' }).waitFor();
    await checkPage(page, 'owner-new-model');
    slug = uniqueSlug('journey');
    await page.getByLabel('Slug', { exact: false }).fill(slug);
    await page.getByLabel('Name', { exact: true }).fill(MODEL_NAME);
    await page.getByLabel('Task').selectOption('IMAGE_CLASSIFICATION');
    await page.getByLabel('Tags (comma-separated, up to 20)').fill('digits, mnist');
    await page.getByRole('button', { name: 'Create model' }).click();
    await page.waitForURL(`**/owner/models/${slug}`);
    await page.getByRole('heading', { name: MODEL_NAME }).waitFor();

    // The owner's files as the demo trainer wrote them, and the demo publisher's signature and held-out digits.
    const card = JSON.parse(await readFile(path.join(demoDir, 'card.json'), 'utf8')) as DemoCard;
    const evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(demoDir, 'eval.json'), 'utf8')));
    const examples = path.join(folder, 'examples.json');
    await writeFile(
      examples,
      JSON.stringify({
        inputs: Array.from({ length: evalSet.count }, (_, i) =>
          Array.from(evalSet.inputs.subarray(i * evalSet.exampleSize, (i + 1) * evalSet.exampleSize), (value) =>
            Number(value.toFixed(5)),
          ),
        ),
        labels: evalSet.targets,
      }),
    );
    await page
      .getByLabel('Model files (model.json and weights)', { exact: true })
      .setInputFiles([path.join(demoDir, 'model.json'), path.join(demoDir, 'model.weights.bin')]);
    await page.getByRole('list', { name: 'Chosen files' }).getByText('model.weights.bin').waitFor();
    await page.getByLabel('Version (semantic, e.g. 1.0.0)').fill('1.0.0');
    await page.getByLabel('Changelog').fill('The demo MNIST model');
    await page.getByLabel('Class labels, comma-separated in output order (classifiers)').fill(card.labels.join(','));
    await page.getByLabel(/^Signature/).fill(JSON.stringify(card.signature));
    await page.getByLabel(/^Evaluation examples/).setInputFiles(examples);
    await page.getByRole('button', { name: 'Publish version' }).click();
    await page.getByText('Published version 1.0.0, watermarked.').waitFor({ timeout: 120_000 });
    assert.equal(await page.getByRole('progressbar', { name: 'Upload progress' }).getAttribute('value'), '100');
    await page.getByText('Uploaded 100%').waitFor();
    const version = page.getByRole('row').filter({ hasText: 'The demo MNIST model' });
    await version.getByText('Active').waitFor();
    await version.getByText('latest').waitFor();

    await page.getByRole('button', { name: 'New plan' }).click();
    await page.getByLabel('Plan name').fill(PLAN_NAME);
    await page.getByLabel('Price per prediction').fill('0.001');
    await page.getByLabel('Prediction quota (empty: unlimited)').fill('1000');
    await page.getByLabel('Contracts wait for my approval').check();
    await page.getByRole('button', { name: 'Create plan' }).click();
    await page.getByText(`Plan ${PLAN_NAME} created.`).waitFor();
    await page
      .getByRole('row')
      .filter({ hasText: PLAN_NAME })
      .getByText(/approval required/)
      .waitFor();
    await checkPage(page, 'owner-manage-model');
    assert.deepEqual(owner.errors, []);

    const res = await server.gql(
      `query M($slug: String!) { model(slug: $slug) { task owner { displayName }
        version(version: "latest") { version io { inputs { preprocessing { __typename } } outputs { labels } } }
        plans { name requiresApproval } } }`,
      { slug },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(res.data!.model, {
      task: 'IMAGE_CLASSIFICATION',
      owner: { displayName: OWNER.displayName },
      version: {
        version: '1.0.0',
        io: { inputs: [{ preprocessing: { __typename: 'ImagePreprocessing' } }], outputs: [{ labels: card.labels }] },
      },
      plans: [{ name: PLAN_NAME, requiresApproval: true }],
    });
  });

  it('consumer: finds the model, requests access, is approved, makes a key, draws a 7 the model reads, and sees it in the usage and the CSV', async () => {
    const consumer = await openConsole(browser, server.origin);
    const { page } = consumer;
    try {
      await signUpInBrowser(page, CONSUMER, 'consumer');
      await page.getByRole('heading', { name: 'Marketplace' }).waitFor();
      await page.getByRole('searchbox', { name: 'Search' }).fill(MODEL_NAME);
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      const found = page.getByRole('region', { name: 'Models found' }).getByRole('link', { name: MODEL_NAME });
      await found.waitFor();
      await checkPage(page, 'marketplace');
      await found.click();
      await page.waitForURL(`**/models/${slug}`);
      await page.getByRole('heading', { name: MODEL_NAME, level: 1 }).waitFor();

      await page.getByRole('button', { name: `Request access: ${PLAN_NAME}` }).click();
      await page.getByRole('status').filter({ hasText: 'Your request was sent' }).waitFor();
      const licence = page.getByRole('region', { name: 'Your licence' });
      await licence.getByText('Waiting for the owner’s approval').waitFor();
      await checkPage(page, 'model-page-pending');

      // The owner, in their own browser, approves it on the approvals page.
      await owner.page.goto('/owner/approvals');
      const approvals = owner.page.getByRole('region', { name: MODEL_NAME });
      const approve = approvals.getByRole('button', {
        name: `Approve ${CONSUMER.displayName}'s ${PLAN_NAME} contract`,
      });
      await approve.waitFor();
      await checkPage(owner.page, 'owner-approvals');
      await approve.click();
      await owner.page.getByText('Nothing is waiting for your approval.').waitFor();
      assert.deepEqual(owner.errors, []);

      await page.reload();
      await licence.getByText('Active', { exact: true }).waitFor();
      await licence.getByText('0 of 1000 units used').waitFor();
      await checkPage(page, 'model-page-active');

      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByLabel('Name').fill('journey key');
      await page.getByRole('button', { name: 'Create key' }).click();
      const secret = (await page.getByTestId('api-key-secret').textContent())!.trim();
      assert.match(secret, /^mmk_/);
      await checkPage(page, 'api-keys');
      const ME = '{ me { email } }';
      assert.deepEqual((await server.gql(ME, {}, { apiKey: secret })).data, { me: { email: CONSUMER.email } });
      assert.deepEqual((await server.gql(ME, {}, { headers: { authorization: `Bearer ${secret}` } })).data, {
        me: { email: CONSUMER.email },
      });

      // Usage before the prediction: nothing yet, on the figures and on the chart.
      await page.getByRole('link', { name: 'Usage' }).click();
      const chart = page.getByTestId(/^chart-Your usage/).getByRole('img');
      await chart.waitFor();
      assert.equal(await page.getByTestId('usage-calls').textContent(), '0');
      assert.match((await chart.getAttribute('aria-label')) ?? '', /: Calls 0, Billable units 0, Errors 0 in all$/);

      await page.goto(`/models/${slug}`);
      const tryIt = page.getByRole('region', { name: /Try it/ });
      await drawSeven(page, tryIt.getByRole('img', { name: /Drawing area/ }));
      // The page's own answer, read to find the prediction in the CSV below.
      const answered = page.waitForResponse((response) =>
        String(response.request().postDataJSON()?.query).includes('TryPredict'),
      );
      await tryIt.getByRole('button', { name: 'Predict' }).click();
      const { predict } = (await (await answered).json()).data as {
        predict: { id: string; contract: { id: string } };
      };
      const result = tryIt.getByRole('status');
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · 1 quota unit used/).waitFor();
      assert.equal(await result.locator('.try-it-label strong').innerText(), '7');
      await licence.getByText('1 of 1000 units used').waitFor();
      await checkPage(page, 'model-page-try-it');

      await page.getByRole('link', { name: 'Usage' }).click();
      await chart.waitFor();
      assert.equal(await page.getByTestId('usage-calls').textContent(), '1');
      assert.match((await chart.getAttribute('aria-label')) ?? '', /: Calls 1, Billable units 1, Errors 0 in all$/);
      await checkPage(page, 'usage');
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Download CSV' }).click(),
      ]);
      const csv = (await readFile((await download.path())!, 'utf8')).trim().split('\n');
      assert.match(csv[0]!, /^at,prediction_id,.*,contract_id,/);
      assert.equal(csv.length, 2, csv.join('\n'));
      assert.ok(csv[1]!.includes(`,${predict.id},`), csv[1]);
      assert.ok(csv[1]!.includes(`,${slug},1.0.0,${predict.contract.id},OK,`), csv[1]);
      assert.deepEqual(consumer.errors, []);
    } finally {
      await consumer.context.close();
    }
  });

  it("admin: finds the owner's approval in the audit log and verifies the chain", async () => {
    const admin = await openConsole(browser, server.origin);
    const { page } = admin;
    try {
      await page.goto('/login');
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
      await checkPage(page, 'log-in');
      await logInBrowser(page, ADMIN.email, ADMIN.password);
      await page.getByRole('link', { name: 'Audit log' }).click();
      await page.getByRole('heading', { name: 'Audit log' }).waitFor();
      await page.getByLabel('Action').fill('contract.*');
      await page.getByRole('button', { name: 'Filter' }).click();
      const approval = page.getByRole('row', { name: /contract\.approved/ });
      await approval.waitFor();
      assert.match((await approval.textContent()) ?? '', new RegExp(`${OWNER.displayName}.*contract\\.approved`));
      assert.equal(await page.getByRole('row', { name: /\buser\./ }).count(), 0, 'only contract events');
      await page.getByRole('button', { name: 'Verify chain' }).click();
      await page
        .getByRole('status')
        .filter({ hasText: /^The chain holds: \d+ events checked/ })
        .waitFor();
      await checkPage(page, 'admin-audit');
      assert.deepEqual(admin.errors, []);
    } finally {
      await admin.context.close();
    }
  });
});
