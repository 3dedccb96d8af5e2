// The owner's journey in a real browser: create a model, publish a version from files (with upload progress),
// point an alias, deprecate and archive versions, offer plans, approve and reject pending contracts, suspend and
// resume one, see the usage, and find the owner mark in the owner's own download on the watermark page.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  accessibilityViolations,
  keyboardReachable,
  launchBrowser,
  logInBrowser,
  openConsole,
  screenshot,
} from '../support/browser.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { buildMlp, DIGITS, PREDICT, publish, storedArtifactOf, uniqueSlug, uploadWithTfjs } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** A model's two files, as an owner has them on disk. */
async function writeModelFiles(folder: string, files: { modelJson: Uint8Array; weights: Uint8Array }) {
  const modelJson = path.join(folder, 'model.json');
  const weights = path.join(folder, 'model.weights.bin');
  await writeFile(modelJson, files.modelJson);
  await writeFile(weights, files.weights);
  return [modelJson, weights];
}

/** A contract of the model as the API reports it to the owner. */
async function contractOf(server: TestServer, owner: SignedUpUser, model: string, id: string) {
  const res = await server.gql(
    `query C($model: String!) { contractsForModel(model: $model) { id status statusReason } }`,
    { model },
    { token: owner.token },
  );
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return (res.data!.contractsForModel as { id: string; status: string; statusReason: string | null }[]).find(
    (c) => c.id === id,
  );
}

describe('owner pages', () => {
  let server: TestServer;
  let browser: Browser;
  let owner: SignedUpUser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let folder: string;
  /** The model every test of the journey works on, made through the page by the first. */
  let slug: string;

  before(async () => {
    [server, browser, folder] = await Promise.all([
      startTestServer(),
      launchBrowser(),
      mkdtemp(path.join(os.tmpdir(), 'owner-pages-')),
    ]);
    owner = await signUp(server, { role: 'OWNER' });
    ({ context, page, errors } = await openConsole(browser, server.origin));
    await logInBrowser(page, owner.email, owner.password);
  });
  after(async () => {
    await context?.close();
    await Promise.all([server?.close(), browser?.close(), folder && rm(folder, { recursive: true, force: true })]);
  });

  it('creates a model and publishes a version from files, showing the upload progress', async () => {
    slug = uniqueSlug('owned');
    await page.goto('/owner/models/new');
    await page.getByRole('heading', { name: 'Create a model' }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'owner-new-model');
    await page.getByLabel('Slug', { exact: false }).fill(slug);
    await page.getByLabel('Name', { exact: true }).fill('Owned digits');
    await page.getByLabel('Task').selectOption('IMAGE_CLASSIFICATION');
    await page.getByLabel('Tags (comma-separated, up to 20)').fill('digits, mnist');
    await page.getByLabel('Intended use').fill('Reading handwritten digits.');
    await page.getByRole('button', { name: 'Create model' }).click();
    await page.waitForURL(`**/owner/models/${slug}`);
    await page.getByRole('heading', { name: 'Owned digits' }).waitFor();

    // The publish form is usable from the keyboard: every control is reached by Tab.
    const reached = await keyboardReachable(page);
    for (const control of [
      'input:Model files (model.json and weights)',
      'input:Version (semantic, e.g. 1.0.0)',
      'input:Class labels, comma-separated in output order (classifiers)',
      'button:Publish version',
    ]) {
      assert.ok(reached.includes(control), `${control} not reached by Tab: ${reached.join(' | ')}`);
    }

    const tfModel = buildMlp([784, 16, 10], 11);
    const files = await writeModelFiles(folder, await storedArtifactOf(tfModel));
    await page.getByLabel('Model files (model.json and weights)', { exact: true }).setInputFiles(files);
    await page.getByRole('list', { name: 'Chosen files' }).getByText('model.weights.bin').waitFor();
    await page.getByLabel('Version (semantic, e.g. 1.0.0)').fill('1.0.0');
    await page.getByLabel('Changelog').fill('First release');
    await page.getByLabel('Class labels, comma-separated in output order (classifiers)').fill(DIGITS.join(','));
    // Labelled examples the mark's cost is measured on (blank images: what the form sends is what is measured).
    const examples = path.join(folder, 'examples.json');
    await writeFile(
      examples,
      JSON.stringify({ inputs: new Array(8).fill(new Array(784).fill(0)), labels: [0, 1, 2, 3, 4, 5, 6, 7] }),
    );
    await page.getByLabel(/^Evaluation examples/).setInputFiles(examples);
    await page.getByRole('button', { name: 'Publish version' }).click();
    await page.getByText('Published version 1.0.0, watermarked.').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByRole('progressbar', { name: 'Upload progress' }).getAttribute('value'), '100');
    await page.getByText('Uploaded 100%').waitFor();

    const row = page.getByRole('row').filter({ hasText: 'First release' });
    await row.getByText('Active').waitFor();
    await row.getByText('latest').waitFor();
    await row.getByText(/Marked, \d+ bits.*; 100\.0% of predictions unchanged; accuracy/).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'owner-manage-model');
    assert.deepEqual(errors, []);
  });

  it('points an alias, deprecates a version and archives another after a confirmation', async () => {
    const second = await uploadWithTfjs(server, buildMlp([784, 16, 10], 12), { token: owner.token });
    await publish(server, { token: owner.token }, { model: slug, version: '1.1.0', artifactId: second.id });
    await page.goto(`/owner/models/${slug}`);
    const first = page.getByRole('row').filter({ hasText: 'First release' });
    const newer = page.getByRole('row').filter({ has: page.getByRole('cell', { name: '1.1.0', exact: true }) });
    await newer.waitFor();

    await page.getByLabel('Alias', { exact: true }).fill('stable');
    await page.getByLabel('points at version').selectOption('1.0.0');
    await page.getByRole('button', { name: 'Set alias' }).click();
    await page.getByText('stable now points at 1.0.0.').waitFor();
    await first.getByText('stable').waitFor();

    await page.getByRole('button', { name: 'Deprecate version 1.0.0' }).click();
    await first.getByRole('cell', { name: 'Deprecated' }).waitFor();

    await page.getByRole('button', { name: 'Archive version 1.1.0' }).click();
    await newer
      .getByRole('group', { name: 'Confirm' })
      .getByText('Archive 1.1.0? It stops serving for good.')
      .waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await page.getByRole('button', { name: 'Yes, archive' }).click();
    await newer.getByRole('cell', { name: 'Archived' }).waitFor();

    const res = await server.gql(
      `query V($slug: String!) { model(slug: $slug) { aliases { name version { version } }
        versions { version status } } }`,
      { slug },
      { token: owner.token },
    );
    const model = res.data!.model;
    assert.deepEqual(
      model.versions.map((v: { version: string; status: string }) => [v.version, v.status]),
      [
        ['1.1.0', 'ARCHIVED'],
        ['1.0.0', 'DEPRECATED'],
      ],
    );
    assert.ok(model.aliases.some((a: any) => a.name === 'stable' && a.version.version === '1.0.0'));
    assert.deepEqual(errors, []);
  });

  it('creates a plan with its terms in the editor, and edits it', async () => {
    await page.goto(`/owner/models/${slug}`);
    await page.getByRole('button', { name: 'New plan' }).click();
    await page.getByLabel('Plan name').fill('Gated');
    await page.getByLabel('Price per prediction').fill('0.002');
    await page.getByLabel('Prediction quota (empty: unlimited)').fill('1000');
    await page.getByLabel('Contracts wait for my approval').check();
    await page.getByRole('button', { name: 'Create plan' }).click();
    await page.getByText('Plan Gated created.').waitFor();
    const row = page.getByRole('row').filter({ hasText: 'Gated' });
    await row.getByText('1,000 predictions a month').waitFor();
    await row.getByText(/approval required/).waitFor();

    await page.getByRole('button', { name: 'Edit plan Gated' }).click();
    await page.getByLabel('Price per prediction').fill('0.003');
    await page.getByRole('button', { name: 'Save plan' }).click();
    await page.getByText('Plan Gated saved (revision 2).').waitFor();
    await row.getByText('0.003 EUR per prediction').waitFor();

    const plans = await server.gql(
      `query P($slug: String!) { model(slug: $slug) { plans { name pricePerPrediction predictionQuota requiresApproval } } }`,
      { slug },
      { token: owner.token },
    );
    assert.deepEqual(plans.data!.model.plans, [
      { name: 'Gated', pricePerPrediction: '0.003', predictionQuota: 1000, requiresApproval: true },
    ]);
    assert.deepEqual(errors, []);
  });

  it('approves and rejects pending contracts, suspends and resumes another, and shows the usage', async () => {
    const reviewed = await createPlan(server, { token: owner.token }, slug, {
      name: 'Reviewed',
      requiresApproval: true,
    });
    const vetted = await createPlan(server, { token: owner.token }, slug, { name: 'Vetted', requiresApproval: true });
    const instant = await createPlan(server, { token: owner.token }, slug, { name: 'Instant' });
    const [approved, rejected, active] = await Promise.all([signUp(server), signUp(server), signUp(server)]);
    const toApprove = await accept(server, { token: approved.token }, reviewed.id);
    const toReject = await accept(server, { token: rejected.token }, vetted.id);
    const toSuspend = await accept(server, { token: active.token }, instant.id);
    assert.deepEqual([toApprove.status, toReject.status, toSuspend.status], ['PENDING', 'PENDING', 'ACTIVE']);
    const predicted = await server.gql(
      PREDICT,
      { input: { model: slug, inputs: [new Array(784).fill(0)] } },
      { token: active.token },
    );
    assert.equal(predicted.errors, undefined, JSON.stringify(predicted.errors));

    await page.goto('/owner/approvals');
    const section = page.getByRole('region', { name: 'Owned digits' });
    const approve = section.getByRole('button', { name: "Approve Test User's Reviewed contract" });
    const reject = section.getByRole('button', { name: "Reject Test User's Vetted contract" });
    await Promise.all([approve.waitFor(), reject.waitFor()]);
    // Only the actions the API offers (viewerActions): a pending contract cannot be suspended or resumed.
    assert.equal(await section.getByRole('button', { name: /^(Suspend|Resume) / }).count(), 0);
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'owner-approvals');

    await reject.click();
    await page.getByLabel('Reason to reject (the consumer sees it)').fill('Not a fit for this model');
    await page.getByRole('button', { name: 'Confirm reject' }).click();
    await reject.waitFor({ state: 'detached' });
    await approve.click();
    // Nothing left to approve: the model's section goes, and one sentence says so.
    await section.waitFor({ state: 'hidden' });
    await page.getByRole('status').filter({ hasText: 'Nothing is waiting for your approval.' }).waitFor();
    assert.equal((await contractOf(server, owner, slug, toApprove.id))?.status, 'ACTIVE');
    assert.deepEqual(await contractOf(server, owner, slug, toReject.id), {
      id: toReject.id,
      status: 'REJECTED',
      statusReason: 'Not a fit for this model',
    });

    await page.goto(`/owner/models/${slug}`);
    const row = page.getByRole('row').filter({ hasText: 'Instant' }).filter({ hasText: 'Active' });
    await row.getByRole('button', { name: "Suspend Test User's Instant contract" }).click();
    await page.getByLabel('Reason to suspend (the consumer sees it)').fill('Unpaid invoice');
    await page.getByRole('button', { name: 'Confirm suspend' }).click();
    const suspended = page.getByRole('row').filter({ hasText: 'Reason: Unpaid invoice' });
    await suspended.getByText('Suspended').waitFor();
    assert.equal((await contractOf(server, owner, slug, toSuspend.id))?.status, 'SUSPENDED');
    await suspended.getByRole('button', { name: "Resume Test User's Instant contract" }).click();
    await page
      .getByRole('row')
      .filter({ hasText: 'Instant' })
      .getByRole('button', { name: "Suspend Test User's Instant contract" })
      .waitFor();
    assert.equal((await contractOf(server, owner, slug, toSuspend.id))?.status, 'ACTIVE');

    // The usage panel, scoped to this model: the consumer's call, on the daily chart and in the totals.
    await page.getByTestId('chart-Usage and revenue per day (last 30 days)').waitFor();
    assert.equal(await page.getByTestId('usage-calls').textContent(), '1');
    assert.deepEqual(errors, []);
  });

  it("edits the model's description fields", async () => {
    await page.goto(`/owner/models/${slug}`);
    const details = page.getByRole('form', { name: 'Description' });
    await details.getByLabel('Description (Markdown)').fill('Reads **digits**.');
    await details.getByLabel('Limitations').fill('Centred digits only.');
    await details.getByRole('button', { name: 'Save description' }).click();
    await page.getByText('Saved the model description.').waitFor();
    const res = await server.gql(
      `query M($slug: String!) { model(slug: $slug) { description tags card { intendedUse limitations } } }`,
      { slug },
    );
    assert.deepEqual(res.data!.model, {
      description: 'Reads **digits**.',
      tags: ['digits', 'mnist'],
      card: { intendedUse: 'Reading handwritten digits.', limitations: 'Centred digits only.' },
    });
    assert.deepEqual(errors, []);
  });

  it("lists the owner's models, each linked to its manage page", async () => {
    await page.goto('/owner/models');
    await page.getByRole('link', { name: 'Manage Owned digits' }).click();
    await page.waitForURL(`**/owner/models/${slug}`);
    await page.goto('/owner/models');
    await page.getByRole('link', { name: 'Manage Owned digits' }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'owner-my-models');
    assert.deepEqual(errors, []);
  });

  it("finds the owner mark in the owner's own download uploaded on the watermark page", async () => {
    const res = await server.gql(
      `query V($slug: String!) { model(slug: $slug) { version(version: "1.0.0") { id } } }`,
      { slug },
      { token: owner.token },
    );
    const versionId = res.data!.model.version.id as string;
    const download = async (file: string) => {
      const response = await fetch(`${server.origin}/v1/versions/${versionId}/${file}`, {
        headers: { authorization: `Bearer ${owner.token}` },
      });
      assert.equal(response.status, 200);
      return new Uint8Array(await response.arrayBuffer());
    };
    const suspect = [
      ['model.json', Buffer.from(await download('model.json')).toString('base64')],
      ['model.weights.bin', Buffer.from(await download('model.weights.bin')).toString('base64')],
    ];

    await page.goto('/owner/watermark');
    await page.getByRole('heading', { name: 'Watermark check' }).waitFor();
    assert.deepEqual(await accessibilityViolations(page), []);
    // Dropped on the drop zone this time (the publish test chose its files with the file input).
    const dropped = await page.evaluateHandle(`(() => {
      const transfer = new DataTransfer();
      for (const [name, base64] of ${JSON.stringify(suspect)}) {
        transfer.items.add(new File([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], name));
      }
      return transfer;
    })()`);
    await page
      .getByRole('group', { name: 'Drop zone for suspect model files (model.json and weights)' })
      .dispatchEvent('drop', { dataTransfer: dropped });
    await page.getByRole('list', { name: 'Chosen files' }).getByText('model.weights.bin').waitFor();
    await page.getByRole('button', { name: 'Check for watermarks' }).click();
    await page.getByRole('heading', { name: 'Verdict: MATCH' }).waitFor({ timeout: 60_000 });
    const match = page.getByRole('row').filter({ hasText: 'Your owner mark' });
    const link = match.getByRole('link', { name: 'Owned digits 1.0.0' });
    assert.equal(await link.getAttribute('href'), `/owner/models/${slug}`);
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, 'owner-watermark');
    assert.deepEqual(errors, []);
  });
});
