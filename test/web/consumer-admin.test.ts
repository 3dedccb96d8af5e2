// The consumer's and the admin's pages in a real browser, on data made through the public API: contracts (quota
// bar, certificate verified), API keys (secret shown once, revoked), usage (chart, CSV download, statements),
// users and roles, the audit log and its chain check, all usage.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  accessibilityViolations,
  keyboardReachable,
  launchBrowser,
  logInBrowser,
  openConsole,
  screenshot,
  type ConsolePage,
} from '../support/browser.js';
import { signUp, uniqueEmail, type SignedUpUser } from '../support/fixtures.js';
import { accept, createPlan } from '../support/licensing.js';
import { DIGITS, PREDICT, publish, publishedMlp, randomRows, uploadWithTfjs } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const ADMIN = { email: uniqueEmail('admin'), password: 'console admin passphrase' };
const QUOTA = 100;
const PREDICTED = [2, 5];
const ME = '{ me { id } }';

/** Runs `check` on a fresh, logged-in page and closes its context; the page must log no errors. */
async function asUser(
  browser: Browser,
  server: TestServer,
  user: { email: string; password: string },
  check: (console: ConsolePage) => Promise<void>,
): Promise<void> {
  const opened = await openConsole(browser, server.origin);
  try {
    await logInBrowser(opened.page, user.email, user.password);
    await check(opened);
    assert.deepEqual(opened.errors, []);
  } finally {
    await opened.context.close();
  }
}

async function assertAccessible(page: Page, name: string): Promise<void> {
  await screenshot(page, name);
  assert.deepEqual(await accessibilityViolations(page), [], name);
}

describe('consumer and admin pages', () => {
  let server: TestServer;
  let browser: Browser;
  let consumer: SignedUpUser;
  let contractId: string;
  let modelSlug: string;
  let owner: SignedUpUser;
  let published: Awaited<ReturnType<typeof publishedMlp>>;

  before(async () => {
    [server, browser] = await Promise.all([
      startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password }),
      launchBrowser(),
    ]);
    owner = await signUp(server, { role: 'OWNER' });
    published = await publishedMlp(server, { token: owner.token });
    modelSlug = published.model.slug;
    const plan = await createPlan(server, { token: owner.token }, modelSlug, { predictionQuota: QUOTA });
    consumer = await signUp(server);
    contractId = (await accept(server, { token: consumer.token }, plan.id)).id;
    for (const [i, count] of PREDICTED.entries()) {
      const res = await server.gql(
        PREDICT,
        { input: { model: modelSlug, inputs: randomRows(count, 784, i + 1) } },
        { token: consumer.token },
      );
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    }
  });
  after(async () => {
    await Promise.all([browser?.close(), server?.close()]);
  });

  const used = PREDICTED.reduce((sum, n) => sum + n, 0);

  it('shows a contract with its quota bar and certificate, and verifies the certificate', async () => {
    await asUser(browser, server, consumer, async ({ page }) => {
      await page.goto('/contracts');
      await page.getByRole('heading', { name: /My contracts/ }).waitFor();
      const quota = page.getByRole('progressbar', { name: `Quota used: ${used} of ${QUOTA}` });
      await quota.waitFor();
      assert.equal(await quota.getAttribute('aria-valuenow'), String(used));
      assert.ok(await page.getByText(/resets/).isVisible());
      await page.getByText('Licence certificate', { exact: true }).click();
      assert.match(await page.getByLabel('Licence certificate').inputValue(), /^ey/);
      // Plain http from another host has no clipboard API: the text is shown selected, with the keys to press.
      await page.evaluate('Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true })');
      await page.getByRole('button', { name: 'Copy certificate' }).click();
      await page.getByRole('status').filter({ hasText: 'Press Ctrl+C (⌘C) to copy.' }).waitFor();
      const certificate = await page.getByLabel('Licence certificate').inputValue();
      assert.equal(
        await page.evaluate(
          '(() => { const f = document.activeElement; return f.value.slice(f.selectionStart, f.selectionEnd); })()',
        ),
        certificate,
        'the whole certificate is selected in the focused field',
      );
      await page.getByRole('button', { name: 'Verify' }).click();
      await page
        .getByRole('status')
        .filter({ hasText: /^Valid/ })
        .waitFor();
      assert.ok(await page.getByRole('button', { name: 'Cancel contract' }).isVisible());
      await assertAccessible(page, 'contracts');
    });
  });

  it('creates a key whose secret is shown once, by keyboard, and revokes it after confirming', async () => {
    await asUser(browser, server, consumer, async ({ page, context }) => {
      await context.grantPermissions(['clipboard-read', 'clipboard-write']);
      await page.goto('/keys');
      await page.getByLabel('Name').fill('ci runner');
      const reached = await keyboardReachable(page);
      for (const control of ['input:Name', 'button:Create key']) {
        assert.ok(reached.includes(control), `${control} not reachable by Tab: ${reached.join(', ')}`);
      }
      for (const scope of ['PREDICT', 'READ_USAGE', 'MANAGE_MODELS', 'DOWNLOAD']) {
        assert.ok(
          reached.some((name) => name.startsWith(`input:${scope}`)),
          `${scope} not reachable: ${reached.join(', ')}`,
        );
      }
      await page.getByRole('checkbox', { name: /READ_USAGE/ }).check();
      await page.getByRole('button', { name: 'Create key' }).click();
      const secret = (await page.getByTestId('api-key-secret').textContent())!.trim();
      assert.match(secret, /^mmk_/);
      await page.getByRole('button', { name: 'Copy secret' }).click();
      await page.getByRole('button', { name: /Copied/ }).waitFor();
      assert.equal(await page.evaluate<string>('navigator.clipboard.readText()'), secret);
      const me = await server.gql(ME, {}, { apiKey: secret });
      assert.equal(me.data?.me?.id, consumer.id);
      await assertAccessible(page, 'api-keys');

      await page.reload();
      await page.getByRole('row', { name: /ci runner/ }).waitFor();
      assert.equal(await page.getByTestId('api-key-secret').count(), 0, 'the secret is gone after a reload');
      assert.equal(await page.getByText(secret).count(), 0);
      const row = page.getByRole('row', { name: /ci runner/ });
      assert.match((await row.textContent()) ?? '', /PREDICT.*READ_USAGE/);
      await row.getByRole('button', { name: 'Revoke ci runner' }).click();
      await row.getByRole('button', { name: 'Yes, revoke' }).click();
      await row.getByText(/^Revoked/).waitFor();
      const refused = await server.gql(ME, {}, { apiKey: secret });
      assert.equal(refused.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(refused));
    });
  });

  it('shows usage with its chart, downloads a real CSV, and shows the month statement', async () => {
    await asUser(browser, server, consumer, async ({ page }) => {
      await page.goto('/usage');
      await page.getByTestId(/^chart-Your usage/).waitFor();
      assert.equal(await page.getByTestId('usage-calls').textContent(), String(PREDICTED.length));
      assert.equal(await page.getByTestId('usage-units').textContent(), String(used));
      assert.equal(
        (await page
          .getByTestId(/^chart-Your usage/)
          .locator('canvas')
          .count()) > 0,
        true,
      );
      // What the calls cost, per day, beside them (one line per currency billed).
      await page
        .getByTestId(/^chart-Spend per day/)
        .locator('canvas')
        .first()
        .waitFor();

      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Download CSV' }).click(),
      ]);
      const csv = (await readFile((await download.path())!, 'utf8')).trim().split('\n');
      assert.match(csv[0]!, /^at,prediction_id,.*,contract_id,/);
      assert.equal(csv.length, 1 + PREDICTED.length);
      for (const line of csv.slice(1)) assert.ok(line.includes(`,${modelSlug},1.0.0,${contractId},OK,`), line);

      // Calls per contract as bars, named by model and plan (test/support's "Digits", "Standard"), the figure as text too.
      const perContract = page.getByRole('table', { name: 'Per contract' });
      const row = perContract.getByRole('row', { name: 'Digits · Standard' });
      await row.waitFor();
      assert.equal(await row.getByRole('cell').first().innerText(), String(PREDICTED.length));
      assert.equal(await perContract.getByText(contractId).count(), 0, 'named, not an id');

      await page.getByLabel('Contract').selectOption(contractId);
      await page.getByRole('button', { name: 'Show statement' }).click();
      const statement = page.getByRole('table', { name: /Statement for/ });
      await statement.waitFor();
      assert.match((await statement.getByRole('row').nth(1).textContent()) ?? '', /1\.0\.0.*prediction/);
      assert.equal(await page.getByTestId('statement-units').textContent(), String(used));
      assert.match((await page.getByTestId('statement-total').textContent()) ?? '', /^0\.0140* EUR$/);
      await assertAccessible(page, 'usage');

      // A session ended elsewhere: the download's 401 cannot be refreshed away, so the page asks to log in again
      // (and comes back here after). No usage route answers this session 403, so that sentence has no case here.
      await server.sql.query('UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [
        consumer.id,
      ]);
      await page.getByRole('button', { name: 'Download CSV' }).click();
      const askAgain = page.getByRole('alert').filter({ hasText: 'Please log in to see this page.' });
      assert.equal(await askAgain.getByRole('link', { name: 'log in' }).getAttribute('href'), '/login?next=%2Fusage');
    });
  });

  it('accepts an offered version upgrade, then cancels the contract after confirming', async () => {
    const auth = { token: owner.token };
    const artifact = await uploadWithTfjs(server, published.tfModel, auth);
    await publish(server, auth, { model: modelSlug, version: '1.1.0', artifactId: artifact.id, labels: DIGITS });
    await asUser(browser, server, consumer, async ({ page }) => {
      await page.goto('/contracts');
      const offer = page.getByRole('region', { name: 'Pending upgrade' });
      await offer.getByRole('heading', { name: 'Version 1.1.0 is offered' }).waitFor();
      await assertAccessible(page, 'contracts-upgrade');
      await offer.getByRole('button', { name: 'Accept version 1.1.0' }).click();
      await page.getByText('served 1.1.0').waitFor();
      assert.equal(await page.getByRole('region', { name: 'Pending upgrade' }).count(), 0);

      await page.getByRole('button', { name: 'Cancel contract' }).click();
      await page.getByRole('button', { name: 'Yes, cancel the contract' }).click();
      await page.getByText('CANCELLED', { exact: true }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'Cancel contract' }).count(), 0);
      assert.equal(await page.getByRole('progressbar').count(), 1, 'the quota stays shown');
      const { rows } = await server.sql.query('SELECT status FROM contracts WHERE id = $1', [contractId]);
      assert.equal(rows[0].status, 'CANCELLED');
    });
  });

  it("lets an admin change a user's role after confirming, then find it in the audit log and verify the chain", async () => {
    const dana = await signUp(server);
    await asUser(browser, server, ADMIN, async ({ page }) => {
      await page.goto('/admin/users');
      await page.getByRole('searchbox', { name: 'Search' }).fill(dana.email);
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByText('1 account').waitFor();
      await page.getByLabel(`New role of ${dana.email}`).selectOption('OWNER');
      await page.getByRole('button', { name: `Change role of ${dana.email}` }).click();
      await page.getByRole('button', { name: 'Yes, make owner' }).click();
      await page
        .getByRole('status')
        .filter({ hasText: `${dana.email} is now owner` })
        .waitFor();
      const { rows } = await server.sql.query('SELECT role FROM users WHERE id = $1', [dana.id]);
      assert.equal(rows[0].role, 'OWNER');
      await assertAccessible(page, 'admin-users');

      await page.getByRole('link', { name: `Actions of ${dana.email}` }).click();
      assert.equal(await page.getByLabel('Actor (account id)').inputValue(), dana.id, 'the link filters by actor');
      await page.getByLabel('Actor (account id)').fill('');
      await page.getByLabel('Action').fill('user.*');
      await page.getByLabel('Target id').fill(dana.id);
      await page.getByRole('button', { name: 'Filter' }).click();
      const changed = page.getByRole('row', { name: /user\.role_changed/ });
      await changed.waitFor();
      assert.match((await changed.textContent()) ?? '', new RegExp(ADMIN.email.replace(/\./g, '\\.')));
      assert.equal(await page.getByRole('row', { name: /contract\./ }).count(), 0);
      await page.getByRole('button', { name: 'Verify chain' }).click();
      await page
        .getByRole('status')
        .filter({ hasText: /^The chain holds: \d+ events checked/ })
        .waitFor();
      await assertAccessible(page, 'admin-audit');

      await page.goto('/admin/usage');
      await page.getByTestId(/^chart-Marketplace usage/).waitFor();
      await page
        .getByRole('table', { name: 'Per model' })
        .getByRole('row', { name: new RegExp(modelSlug) })
        .waitFor();
      await page
        .getByRole('table', { name: 'Per consumer' })
        .getByRole('row', { name: /^Test User/ })
        .first()
        .waitFor();
      assert.equal(await page.getByRole('table', { name: 'Per consumer' }).getByText(consumer.id).count(), 0);
      await assertAccessible(page, 'admin-usage');
    });
  });

  it('gates pages by role: a log-in link with next= for the logged out, a sentence for the wrong role, no query', async () => {
    const anonymous = await openConsole(browser, server.origin);
    try {
      const { page } = anonymous;
      for (const [path, title] of [
        ['/contracts', 'My contracts'],
        ['/keys', 'API keys'],
        ['/usage', 'Usage'],
      ] as const) {
        await page.goto(path);
        await page.getByRole('heading', { level: 1, name: title }).waitFor();
        const refusal = page.getByRole('alert').filter({ hasText: 'Please log in to see this page.' });
        assert.equal(
          await refusal.getByRole('link', { name: 'log in' }).getAttribute('href'),
          `/login?next=${encodeURIComponent(path)}`,
        );
      }
      await page.goto('/admin/users');
      await page
        .getByRole('alert')
        .filter({ hasText: /^This page is for admins: please log in/ })
        .waitFor();
      assert.deepEqual(anonymous.errors, []);
    } finally {
      await anonymous.context.close();
    }

    await asUser(browser, server, owner, async ({ page }) => {
      const usageQueries: string[] = [];
      page.on('request', (request) => {
        if (request.url().endsWith('/graphql') && /usage\(/.test(request.postData() ?? '')) {
          usageQueries.push(request.postData()!);
        }
      });
      await page.goto('/admin/usage');
      await page
        .getByRole('alert')
        .filter({ hasText: 'This page is for admins: your account is not an admin account.' })
        .waitFor();
      assert.equal(await page.getByRole('heading', { name: 'Marketplace usage' }).count(), 0);
      assert.deepEqual(usageQueries, [], 'the gate runs no query');
      assert.equal(await page.title(), 'All usage · Modelmarket');
      await assertAccessible(page, 'admin-refused');
    });
  });

  it('titles each page after its heading and moves focus to it on a route change', async () => {
    await asUser(browser, server, consumer, async ({ page }) => {
      await page.goto('/contracts');
      await page.getByRole('heading', { level: 1, name: 'My contracts' }).waitFor();
      assert.equal(await page.title(), 'My contracts · Modelmarket');
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API keys' }).click();
      await page.waitForFunction('document.title === "API keys · Modelmarket"');
      assert.equal(
        await page.evaluate('document.activeElement.tagName + " " + document.activeElement.textContent'),
        'H1 API keys',
      );
    });
  });
});
