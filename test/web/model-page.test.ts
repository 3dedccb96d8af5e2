// The model page in a real browser: the card's markdown rendered safely, metrics with the confusion matrix as
// an accessible heat map, versions and plans; a consumer accepts a licence and tries the model by drawing a
// digit on the canvas; a second consumer requests access to a plan the owner approves.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  accessibilityViolations,
  keyboardReachable,
  launchBrowser,
  logInBrowser,
  openConsole,
  screenshot,
} from '../support/browser.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { createPlan } from '../support/licensing.js';
import { datasetId, evaluate, waitForEvaluation } from '../evaluation/support.js';
import {
  buildMlp,
  createModel,
  DIGITS,
  DIGIT_IMAGE_SIGNATURE,
  publish,
  publishedDigitClassifier,
  randomRows,
  uploadWithTfjs,
} from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Markdown with what an attacker would try: a script, an inline event handler, a javascript: link.
const HOSTILE_DESCRIPTION = [
  'A **digit** classifier.',
  '<script>window.__injected = "script"</script>',
  '<img src="/nothing.png" onerror="window.__injected = \'onerror\'">',
  '[click me](javascript:window.__injected=%22link%22)',
].join('\n\n');

/** 10×10: 40 right on the diagonal, 10 of each "3" taken for an "8". */
const CONFUSION = DIGITS.map((_, row) =>
  DIGITS.map((__, column) => (row === column ? 40 : row === 3 && column === 8 ? 10 : 0)),
);

/** The metrics CONFUSION implies, as an owner's evaluation would report them (the API checks they agree). */
function metricsOf(matrix: number[][]) {
  const samples = matrix.flat().reduce((a, b) => a + b, 0);
  const perClass = DIGITS.map((label, c) => {
    const support = matrix[c]!.reduce((a, b) => a + b, 0);
    const predicted = matrix.reduce((sum, row) => sum + row[c]!, 0);
    const [precision, recall] = [matrix[c]![c]! / predicted, matrix[c]![c]! / support];
    return { label, precision, recall, f1: (2 * precision * recall) / (precision + recall), support };
  });
  return {
    dataset: 'MNIST test digits',
    samples,
    accuracy: DIGITS.reduce((sum, _, c) => sum + matrix[c]![c]!, 0) / samples,
    macroF1: perClass.reduce((sum, row) => sum + row.f1, 0) / perClass.length,
    labels: DIGITS,
    confusionMatrix: matrix,
    perClass,
  };
}
const METRICS = metricsOf(CONFUSION);

const ALIAS =
  'mutation($m: String!, $a: String!, $v: String!) { setVersionAlias(model: $m, alias: $a, version: $v) { name } }';
const DEPRECATE = 'mutation($m: String!, $v: String!) { deprecateModelVersion(model: $m, version: $v) { status } }';

describe('the model page', () => {
  let server: TestServer;
  let browser: Browser;
  let owner: SignedUpUser;
  let slug: string;
  before(async () => {
    [server, browser] = await Promise.all([startTestServer(), launchBrowser()]);
    owner = await signUp(server, { role: 'OWNER' });
    const auth = { token: owner.token };
    const { model, tfModel } = await publishedDigitClassifier(server, auth, {
      model: {
        name: 'Hand-drawn digits',
        description: HOSTILE_DESCRIPTION,
        tags: ['digits'],
        card: {
          intendedUse: 'Names a *single* digit drawn white on black.',
          limitations: 'Untrained: its answers are only for the tests.',
          licenseSummary: 'Pay per prediction; no redistribution.',
        },
      },
      version: { changelog: 'First release' },
    });
    slug = model.slug;
    const again = await uploadWithTfjs(server, tfModel, auth);
    await publish(server, auth, {
      model: slug,
      version: '1.1.0',
      artifactId: again.id,
      signature: DIGIT_IMAGE_SIGNATURE,
      labels: DIGITS,
      changelog: 'Metrics measured',
      metrics: METRICS,
    });
    for (const [query, variables] of [
      [ALIAS, { m: slug, a: 'stable', v: '1.0.0' }],
      [DEPRECATE, { m: slug, v: '1.0.0' }],
    ] as const) {
      const res = await server.gql(query, variables, auth);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
    await createPlan(server, auth, slug, { name: 'Basic', predictionQuota: 1000, rateLimitPerMinute: 60 });
    await createPlan(server, auth, slug, { name: 'Enterprise', requiresApproval: true, pricePerPrediction: '0.01' });
  });
  after(async () => {
    await Promise.all([server?.close(), browser?.close()]);
  });

  async function openModel(page: Page) {
    await page.goto(`/models/${slug}`);
    await page.getByRole('heading', { level: 1, name: 'Hand-drawn digits' }).waitFor();
    await page.getByRole('heading', { name: 'Plans' }).waitFor();
  }

  it('shows the card, metrics, versions and plans, with the markdown rendered safely', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await openModel(page);
      const about = page.getByRole('region', { name: 'About' });
      assert.equal(await about.locator('strong').first().innerText(), 'digit');
      await about.getByRole('region', { name: 'Intended use' }).locator('em', { hasText: 'single' }).waitFor();
      await about.getByRole('region', { name: 'Limitations' }).getByText('Untrained').waitFor();
      await about.getByRole('region', { name: 'Licence summary' }).getByText('no redistribution').waitFor();
      // Nothing of the hostile markdown runs or stays in the page.
      await about.getByText('click me').waitFor();
      assert.equal(await about.getByRole('link', { name: 'click me' }).count(), 0);
      // Raw HTML in markdown is shown as the text it is.
      await about.getByText('<script>window.__injected = "script"</script>').waitFor();
      assert.equal(await page.evaluate('window.__injected'), undefined);
      assert.equal(await page.locator('main script, main [onerror], main a[href^="javascript"]').count(), 0);

      const metrics = page.getByRole('region', { name: 'Metrics (v1.1.0)' });
      await metrics.getByText(`${(METRICS.accuracy * 100).toFixed(1)}%`).waitFor();
      await metrics.getByText(METRICS.macroF1.toFixed(3), { exact: true }).first().waitFor();
      const matrix = page.getByRole('table', { name: /Confusion matrix/ });
      const threeRow = matrix.getByRole('row', { name: /^true three/ });
      assert.deepEqual(await threeRow.getByRole('cell').allInnerTexts(), [
        '0',
        '0',
        '0',
        '40',
        '0',
        '0',
        '0',
        '0',
        '10',
        '0',
      ]);
      // The heat map: the diagonal is darker than a confusion, which is darker than an empty cell.
      const shade = (column: number) => threeRow.getByRole('cell').nth(column).getAttribute('style');
      const [diagonal, confused, empty] = await Promise.all([shade(3), shade(8), shade(0)]);
      assert.notEqual(diagonal, confused);
      assert.notEqual(confused, empty);

      const versions = page.getByRole('region', { name: /^Versions/ });
      await versions.getByRole('heading', { name: 'Versions (2)' }).waitFor();
      const v100 = versions.getByRole('row', { name: /^1\.0\.0/ });
      await v100.getByText('stable').waitFor();
      await v100.getByText('DEPRECATED').waitFor();
      await v100.getByText('First release').waitFor();
      await versions
        .getByRole('row', { name: /^1\.1\.0/ })
        .getByText('latest')
        .waitFor();

      const plans = page.getByRole('region', { name: 'Plans' });
      const basic = plans.getByRole('listitem').filter({ hasText: 'Basic' });
      await basic.getByText('1,000 predictions a month').waitFor();
      await basic.getByText('60 calls a minute').waitFor();
      await basic.getByText('0.002 EUR per prediction').waitFor();
      await plans
        .getByRole('listitem')
        .filter({ hasText: 'Enterprise' })
        .getByText('The owner approves each licence')
        .waitFor();
      // Anonymous: no licence to take here, a way to log in instead; no "Try it".
      assert.equal(await plans.getByRole('button').count(), 0);
      await plans.getByRole('link', { name: 'Log in' }).waitFor();
      assert.equal(await page.getByRole('heading', { name: /Try it/ }).count(), 0);

      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'model-page');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("shows the marketplace's measured metrics, and a derived version its parent's stated ones", async () => {
    const auth = { token: owner.token };
    const artifact = await uploadWithTfjs(server, buildMlp([784, 10], 5), auth);
    const derivedModel = await createModel(server, auth, { name: 'Quantised digits' });
    await publish(server, auth, {
      model: derivedModel.slug,
      version: '1.0.0',
      artifactId: artifact.id,
      labels: DIGITS,
      metrics: METRICS,
    });
    // 1.1.0 is 1.0.0 quantised: it states no metrics of its own (as the demo MNIST model's 1.1.0).
    const rows = randomRows(20, 784, 9);
    const optimized = await server.gql(
      `mutation O($input: OptimizeModelVersionInput!) { optimizeModelVersion(input: $input) { version } }`,
      {
        input: {
          model: derivedModel.slug,
          version: '1.0.0',
          newVersion: '1.1.0',
          quantize: 'UINT8',
          maxAccuracyDrop: 100,
          evaluation: { inputs: rows, labels: rows.map((_, i) => i % DIGITS.length) },
        },
      },
      auth,
    );
    assert.equal(optimized.errors, undefined, JSON.stringify(optimized.errors));
    const jsonl = rows.map((input, i) => JSON.stringify({ input, label: DIGITS[i % DIGITS.length] })).join('\n');
    const dataset = await datasetId(server, auth, `${jsonl}\n`);
    const measured = await waitForEvaluation(
      server,
      auth,
      (await evaluate(server, auth, { model: derivedModel.slug, version: '1.1.0', dataset })).id,
    );
    assert.equal(measured.status, 'SUCCEEDED', JSON.stringify(measured.error));
    const published = await server.gql(
      `mutation P($id: ID!) { publishEvaluation(input: { id: $id }) { id } }`,
      {
        id: measured.id,
      },
      auth,
    );
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));

    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto(`/models/${derivedModel.slug}`);
      const metrics = page.getByRole('region', { name: 'Metrics (v1.1.0)' });
      const verified = metrics.getByRole('region', { name: 'Measured by the marketplace' });
      await verified.getByText(`${(measured.report.accuracy * 100).toFixed(1)}%`).waitFor();
      await verified.getByText(/^Measured on 20 examples/).waitFor();
      const stated = metrics.getByRole('region', {
        name: 'Stated by the owner (v1.0.0, the version v1.1.0 was derived from)',
      });
      await stated.getByText(`${(METRICS.accuracy * 100).toFixed(1)}%`).waitFor();
      await stated.getByRole('table', { name: /Confusion matrix/ }).waitFor();
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'model-page-derived-metrics');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('a consumer accepts a licence, then draws a digit and sees a label, the latency and the unit it used', async () => {
    const consumer = await signUp(server);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await logInBrowser(page, consumer.email, consumer.password);
      await openModel(page);
      const accept = page.getByRole('button', { name: 'Accept licence: Basic' });
      await accept.waitFor();
      const reached = await keyboardReachable(page, 120);
      for (const control of ['button:Accept licence: Basic', 'button:Request access: Enterprise']) {
        assert.ok(reached.includes(control), `${control} not reached: ${reached.join(' | ')}`);
      }
      await accept.click();
      await page.getByRole('status').filter({ hasText: 'Licence accepted' }).waitFor();
      const licence = page.getByRole('region', { name: 'Your licence' });
      await licence.getByText('Active').waitFor();
      await licence.getByText('0 of 1000 units used').waitFor();
      // A live contract under Basic: that plan cannot be taken again (viewerCanAccept), the other one still can.
      await accept.waitFor({ state: 'detached' });
      await page.getByRole('button', { name: 'Request access: Enterprise' }).waitFor();

      const tryIt = page.getByRole('region', { name: /Try it/ });
      const canvas = tryIt.getByRole('img', { name: /Drawing area/ });
      await canvas.scrollIntoViewIfNeeded();
      const box = (await canvas.boundingBox())!;
      // A "1": one stroke down the middle.
      await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.15);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.85, { steps: 12 });
      await page.mouse.up();
      const sent = page.waitForRequest((request) => String(request.postDataJSON()?.query).includes('TryPredict'));
      await tryIt.getByRole('button', { name: 'Predict' }).click();
      const { input } = (await sent).postDataJSON().variables as { input: { inputs: number[][]; version: string } };
      // The contract's pinned version (the `stable` alias when it was made), as 28×28 grey pixels in [0, 1]: a
      // bright stroke on black.
      assert.equal(input.version, '1.0.0');
      assert.equal(input.inputs[0]!.length, 28 * 28);
      const pixels = input.inputs[0]!;
      assert.ok(
        pixels.every((value) => value >= 0 && value <= 1),
        `pixels outside [0, 1]: ${pixels.filter((v) => v < 0 || v > 1).join(', ')}`,
      );
      const bright = pixels.filter((value) => value > 0.5).length;
      assert.ok(bright > 20, `only ${bright} bright pixels`);
      assert.equal(pixels[0], 0);

      const result = tryIt.getByRole('status');
      const label = await result.locator('.try-it-label strong').innerText();
      assert.ok(DIGITS.includes(label), label);
      await result.getByRole('list', { name: 'Top labels' }).getByRole('listitem').nth(4).waitFor();
      await result.getByText(/v1\.0\.0 · [\d.]+ ms · 1 quota unit used/).waitFor();
      await licence.getByText('1 of 1000 units used').waitFor();

      await tryIt.getByRole('button', { name: 'Clear' }).click();
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'model-page-try-it');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('a consumer requests access to a plan that needs approval and sees it waiting', async () => {
    const consumer = await signUp(server);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await logInBrowser(page, consumer.email, consumer.password);
      await openModel(page);
      await page.getByRole('button', { name: 'Request access: Enterprise' }).click();
      await page.getByRole('status').filter({ hasText: 'the owner will review it' }).waitFor();
      await page.getByRole('region', { name: 'Your licence' }).getByText('Waiting for the owner’s approval').waitFor();
      // Pending is no licence to predict with.
      assert.equal(await page.getByRole('heading', { name: /Try it/ }).count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('the owner tries the model unbilled, and an unknown model says so', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await logInBrowser(page, owner.email, owner.password);
      await openModel(page);
      await page.getByRole('link', { name: 'Manage this model' }).waitFor();
      const tryIt = page.getByRole('region', { name: /Try it/ });
      await tryIt.getByRole('button', { name: 'Predict' }).click();
      await tryIt
        .getByRole('status')
        .getByText(/not billed/)
        .waitFor();

      await page.goto('/models/no-such-model');
      await page.getByRole('heading', { name: 'No such model' }).waitFor();
      await page.goto('/no/such/page');
      await page.getByRole('heading', { name: 'Page not found' }).waitFor();
      assert.deepEqual(await accessibilityViolations(page), []);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
