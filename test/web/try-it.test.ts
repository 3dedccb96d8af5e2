// The model page's "Try it" for text and tabular models in a real browser: the owner (unbilled) and a licensee
// (billed a unit) type a text or fill the features; the request carries what the model takes, and the answer on
// the page is the one a direct API predict gives. A bad feature is refused in words before any request; an API
// error (a spent quota) is shown as a sentence.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
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
import {
  PREDICT,
  buildTextClassifier,
  createModel,
  publish,
  publishedTabular,
  uploadWithTfjs,
} from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const VOCABULARY = ['<pad>', '<unk>', 'free', 'money', 'meeting', 'tomorrow', "don't"];
const MAX_TOKENS = 6;
const FEATURES = [
  { name: 'rooms', mean: 4, std: 2 },
  { name: 'area_m2', mean: 90, std: 30 },
];
const TOP_K = 5;

interface PredictOutput {
  label: string | null;
  top: { label: string; score: number }[] | null;
  values: number[];
}

describe('Try it for text and tabular models', () => {
  let server: TestServer;
  let browser: Browser;
  let owner: SignedUpUser;
  let textSlug: string;
  let textPlanId: string;
  let tabularSlug: string;
  let oneUnitPlanId: string;
  before(async () => {
    [server, browser] = await Promise.all([startTestServer(), launchBrowser()]);
    owner = await signUp(server, { role: 'OWNER' });
    const auth = { token: owner.token };
    const artifact = await uploadWithTfjs(server, buildTextClassifier(VOCABULARY.length, MAX_TOKENS), auth);
    textSlug = (await createModel(server, auth, { name: 'Spam filter', task: 'TEXT_CLASSIFICATION' })).slug;
    await publish(server, auth, {
      model: textSlug,
      version: '1.0.0',
      artifactId: artifact.id,
      signature: {
        input: {
          shape: [MAX_TOKENS],
          dtype: 'float32',
          preprocessing: { kind: 'text', vocabulary: VOCABULARY, maxLength: MAX_TOKENS, lowercase: true },
        },
        output: { kind: 'classification', labels: ['ham', 'spam'] },
      },
    });
    textPlanId = (await createPlan(server, auth, textSlug, { name: 'Basic', predictionQuota: 1000 })).id;
    tabularSlug = (await publishedTabular(server, auth, FEATURES)).model.slug;
    oneUnitPlanId = (await createPlan(server, auth, tabularSlug, { name: 'Taster', predictionQuota: 1 })).id;
  });
  after(async () => {
    await Promise.all([server?.close(), browser?.close()]);
  });

  /** The owner's own predict through the API (unbilled): what the page must show for the same input. */
  async function directPredict(slug: string, input: unknown): Promise<PredictOutput> {
    const res = await server.gql(PREDICT, { input: { model: slug, inputs: [input], topK: TOP_K } }, owner);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data!.predict.outputs[0] as PredictOutput;
  }

  /** The `input` of every TryPredict the page sends from now on. */
  function predictRequests(page: Page): { model: string; version: string; inputs: unknown[] }[] {
    const sent: { model: string; version: string; inputs: unknown[] }[] = [];
    page.on('request', (request) => {
      const body = request.method() === 'POST' ? request.postDataJSON() : null;
      if (String(body?.query).includes('TryPredict')) sent.push(body.variables.input);
    });
    return sent;
  }

  async function openTryIt(page: Page, slug: string): Promise<Locator> {
    await page.goto(`/models/${slug}`);
    const tryIt = page.getByRole('region', { name: /Try it/ });
    await tryIt.getByRole('button', { name: 'Predict' }).waitFor();
    return tryIt;
  }

  /** The label and top-k bars on the page are the API's: same labels in order, same scores, bars as wide. */
  async function assertClassificationShown(result: Locator, expected: PredictOutput) {
    assert.ok(expected.label && expected.top);
    assert.equal(await result.locator('.try-it-label strong').innerText(), expected.label);
    const bars = result.getByRole('list', { name: 'Top labels' }).getByRole('listitem');
    assert.equal(await bars.count(), expected.top.length);
    assert.deepEqual(
      await bars.locator('.top-k-label').allInnerTexts(),
      expected.top.map(({ label }) => label),
    );
    assert.deepEqual(
      await bars.locator('.top-k-score').allInnerTexts(),
      expected.top.map(({ score }) => `${(score * 100).toFixed(1)}%`),
    );
    for (const [index, { score }] of expected.top.entries()) {
      const style = (await bars.nth(index).locator('.bar > span').getAttribute('style')) ?? '';
      const width = Number(/width:\s*([\d.]+)%/.exec(style)?.[1]);
      // The browser writes the width back with six significant digits.
      assert.ok(Math.abs(width - score * 100) < 1e-3, `bar ${index}: ${style} for ${score}`);
    }
  }

  it('the owner types a text, unbilled: the string is sent as is and the bars are the API’s answer', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const sent = predictRequests(page);
      await logInBrowser(page, owner.email, owner.password);
      const tryIt = await openTryIt(page, textSlug);
      const text = tryIt.getByLabel('Text to classify');
      const reached = await keyboardReachable(page, 120);
      for (const control of ['textarea:Text to classify', 'button:Predict']) {
        assert.ok(reached.includes(control), `${control} not reached: ${reached.join(' | ')}`);
      }

      // Nothing (or only blanks) to classify: said in words, nothing sent.
      await text.fill('   ');
      await tryIt.getByRole('button', { name: 'Predict' }).click();
      await tryIt.getByRole('alert').getByText('Enter some text.').waitFor();
      assert.equal(sent.length, 0);

      const message = "FREE money tomorrow? Don't";
      await text.fill(message);
      await text.press('Tab');
      await page.keyboard.press('Enter');
      const result = tryIt.getByRole('status');
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · not billed \(you manage this model\)/).waitFor();
      assert.deepEqual(sent, [{ model: textSlug, version: '1.0.0', inputs: [message], topK: TOP_K }]);
      assert.equal(await tryIt.getByRole('alert').count(), 0);
      await assertClassificationShown(result, await directPredict(textSlug, message));

      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'try-it-text');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('a licensee classifies a text for one unit, with the answer a direct predict gives', async () => {
    const licensee = await signUp(server);
    await accept(server, licensee, textPlanId);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const sent = predictRequests(page);
      await logInBrowser(page, licensee.email, licensee.password);
      const tryIt = await openTryIt(page, textSlug);
      const message = 'meeting tomorrow';
      await tryIt.getByLabel('Text to classify').fill(message);
      await tryIt.getByRole('button', { name: 'Predict' }).click();
      const result = tryIt.getByRole('status');
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · 1 quota unit used/).waitFor();
      assert.deepEqual(
        sent.map(({ inputs }) => inputs),
        [[message]],
      );
      await assertClassificationShown(result, await directPredict(textSlug, message));
      await page.getByRole('region', { name: 'Your licence' }).getByText('1 of 1000 units used').waitFor();
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('the owner fills the features: a bad value is refused in words, numbers go keyed by feature name', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const sent = predictRequests(page);
      await logInBrowser(page, owner.email, owner.password);
      const tryIt = await openTryIt(page, tabularSlug);
      const features = tryIt.getByRole('group', { name: 'Features' });
      const [rooms, area] = [features.getByLabel('rooms'), features.getByLabel('area_m2')];
      const reached = await keyboardReachable(page, 120);
      for (const control of ['input:rooms', 'input:area_m2', 'button:Predict']) {
        assert.ok(reached.includes(control), `${control} not reached: ${reached.join(' | ')}`);
      }
      const predictButton = tryIt.getByRole('button', { name: 'Predict' });

      // Empty, then not a number (Chromium keeps "7e" as typed but the field's value is empty): words, no request.
      await predictButton.click();
      await tryIt.getByRole('alert').getByText('Enter a number for rooms.').waitFor();
      await rooms.fill('3');
      await area.pressSequentially('7e');
      await predictButton.click();
      await tryIt.getByRole('alert').getByText('Enter a number for area_m2.').waitFor();
      assert.equal(sent.length, 0);
      assert.deepEqual(await accessibilityViolations(page), []);

      await area.fill('72.5');
      await predictButton.click();
      const result = tryIt.getByRole('status');
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · not billed/).waitFor();
      const row = { rooms: 3, area_m2: 72.5 };
      assert.deepEqual(sent, [{ model: tabularSlug, version: '1.0.0', inputs: [row], topK: TOP_K }]);
      assert.equal(await tryIt.getByRole('alert').count(), 0);
      const [value] = (await directPredict(tabularSlug, row)).values;
      await result.getByText(`Values: ${value!.toPrecision(4)}`, { exact: true }).waitFor();

      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'try-it-tabular');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('a licensee on a one-unit plan predicts once, then is told in a sentence that the quota is spent', async () => {
    const licensee = await signUp(server);
    await accept(server, licensee, oneUnitPlanId);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const sent = predictRequests(page);
      await logInBrowser(page, licensee.email, licensee.password);
      const tryIt = await openTryIt(page, tabularSlug);
      const features = tryIt.getByRole('group', { name: 'Features' });
      await features.getByLabel('rooms').fill('5');
      await features.getByLabel('area_m2').fill('-1.25e2');
      const predictButton = tryIt.getByRole('button', { name: 'Predict' });
      await predictButton.click();
      const result = tryIt.getByRole('status');
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · 1 quota unit used/).waitFor();
      const row = { rooms: 5, area_m2: -125 };
      const [value] = (await directPredict(tabularSlug, row)).values;
      await result.getByText(`Values: ${value!.toPrecision(4)}`, { exact: true }).waitFor();
      await page.getByRole('region', { name: 'Your licence' }).getByText('1 of 1 units used').waitFor();

      await predictButton.click();
      await tryIt.getByRole('alert').getByText('Your contract has used its whole quota for this period.').waitFor();
      assert.equal(sent.length, 2);
      assert.deepEqual(sent[1]!.inputs, [row]);
      // The error replaces the earlier answer: no stale result beside it.
      assert.equal(await tryIt.getByRole('status').count(), 0);
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'try-it-quota-spent');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
