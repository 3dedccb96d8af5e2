// The marketplace in a real browser: search and filters in the URL (shareable, undone by the back button),
// cursor pages of cards, one GraphQL request per page of cards, keyboard and axe checks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  accessibilityViolations,
  keyboardReachable,
  launchBrowser,
  openConsole,
  screenshot,
} from '../support/browser.js';
import { signUp, uniqueEmail } from '../support/fixtures.js';
import { createModel, publishedDigitClassifier } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** The marketplace shows 12 cards a page: 13 digit models make two pages. */
const DIGIT_MODELS = 13;

/** The names of the model cards on the page, in order, once the list has loaded. */
async function cardNames(page: Page): Promise<string[]> {
  const list = page.getByRole('region', { name: 'Models found' });
  await list.and(page.locator('[aria-busy="false"]')).waitFor();
  return list.getByRole('heading', { level: 2 }).allInnerTexts();
}

describe('the marketplace', () => {
  let server: TestServer;
  let browser: Browser;
  let bob: { id: string };
  before(async () => {
    [server, browser] = await Promise.all([startTestServer(), launchBrowser()]);
    const [a, b] = await Promise.all([signUp(server, { role: 'OWNER' }), signUp(server, { role: 'OWNER' })]);
    bob = b;
    await publishedDigitClassifier(
      server,
      { token: a.token },
      {
        model: { name: 'Digits 00', tags: ['digits', 'published'] },
      },
    );
    for (let i = 1; i < DIGIT_MODELS; i++) {
      await createModel(server, { token: a.token }, { name: `Digits ${String(i).padStart(2, '0')}`, tags: ['digits'] });
    }
    await createModel(
      server,
      { token: a.token },
      {
        name: 'Spam filter',
        task: 'TEXT_CLASSIFICATION',
        description: 'Finds junk mail in an inbox.',
        tags: ['spam', 'email'],
      },
    );
    await createModel(server, { token: b.token }, { name: 'Iris', task: 'TABULAR_CLASSIFICATION', tags: ['flowers'] });
  });
  after(async () => {
    await Promise.all([server?.close(), browser?.close()]);
  });

  it('shows a page of cards with one GraphQL request, and the next page with one more', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const operations: string[] = [];
      page.on('request', (request) => {
        if (new URL(request.url()).pathname === '/graphql' && request.method() === 'POST') {
          operations.push(/(query|mutation) (\w+)/.exec(String(request.postDataJSON()?.query))?.[2] ?? '?');
        }
      });
      await page.goto('/');
      const first = await cardNames(page);
      assert.equal(first.length, 12);
      // Newest first: the last created models lead.
      assert.deepEqual(first.slice(0, 2), ['Iris', 'Spam filter']);
      // The session restore (no session here) and one request for all the cards.
      assert.deepEqual(operations, ['RefreshSession', 'Marketplace']);

      const iris = page.getByRole('listitem').filter({ hasText: 'Iris' });
      await iris.getByText('Tabular classification · no version yet').waitFor();
      await iris.getByRole('link', { name: 'flowers' }).waitFor();
      await iris.getByRole('link', { name: 'Test User' }).waitFor();

      await page.getByRole('button', { name: 'Next' }).click();
      await page.getByText('Page 2').waitFor();
      const second = await cardNames(page);
      assert.deepEqual(second, ['Digits 02', 'Digits 01', 'Digits 00']);
      const published = page.getByRole('listitem').filter({ hasText: 'Digits 00' });
      await published.getByText('Image classification · v1.0.0').waitFor();
      assert.deepEqual(operations, ['RefreshSession', 'Marketplace', 'Marketplace']);

      await page.getByRole('button', { name: 'Previous' }).click();
      assert.deepEqual(await cardNames(page), first);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('keeps search and filters in the URL: shareable, and undone by the back button', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/');
      await cardNames(page);
      await page.getByLabel('Search').fill('junk mail');
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForURL((url) => url.searchParams.get('q') === 'junk mail');
      assert.deepEqual(await cardNames(page), ['Spam filter']);

      await page.getByLabel('Task').selectOption('TABULAR_CLASSIFICATION');
      await page.waitForURL((url) => url.searchParams.get('task') === 'TABULAR_CLASSIFICATION');
      await page.getByText('No model matches this search.').waitFor();

      await page.goBack();
      await page.waitForURL((url) => !url.searchParams.has('task'));
      assert.deepEqual(await cardNames(page), ['Spam filter']);
      assert.equal(await page.getByLabel('Task').inputValue(), '');
      await page.goBack();
      await page.waitForURL((url) => !url.searchParams.has('q'));
      assert.equal(await page.getByLabel('Search').inputValue(), '');

      // A shared link opens on the same results.
      await page.goto('/?tag=flowers');
      assert.deepEqual(await cardNames(page), ['Iris']);
      assert.equal(await page.getByLabel('Tag').inputValue(), 'flowers');
      await page.goto(`/?task=IMAGE_CLASSIFICATION&tag=published`);
      assert.deepEqual(await cardNames(page), ['Digits 00']);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("filters by a card's tag and owner, and clears the owner filter", async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/?q=spam');
      await cardNames(page);
      await page.getByRole('link', { name: 'email' }).click();
      await page.waitForURL((url) => url.searchParams.get('tag') === 'email');

      await page.goto('/?tag=flowers');
      await cardNames(page);
      await page.getByRole('link', { name: 'Test User' }).click();
      await page.waitForURL((url) => url.searchParams.get('owner') === bob.id);
      assert.deepEqual(await cardNames(page), ['Iris']);
      await page.getByLabel('Tag').fill('');
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForURL((url) => !url.searchParams.has('tag'));
      assert.deepEqual(await cardNames(page), ['Iris']);

      // The owner it is filtered by is named beside the control that clears the filter.
      await page.getByText('Models by Test User', { exact: true }).waitFor();
      await page.getByRole('button', { name: /every owner/ }).click();
      await page.waitForURL((url) => !url.searchParams.has('owner'));
      assert.equal((await cardNames(page)).length, 12);
      assert.equal(await page.getByText(/^Models by/).count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('signs up as an owner, logs out, refuses a wrong password in words, and logs in back to where it was', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const email = uniqueEmail('console');
      const password = 'a long enough passphrase 42';
      await page.goto('/signup');
      await page.getByLabel('Display name').fill('Console Owner');
      await page.getByLabel('E-mail address').fill(email);
      await page.getByLabel(/^Password/).fill(password);
      await page.getByLabel(/publish and license models/).check();
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'sign-up');
      await page.getByRole('button', { name: 'Sign up' }).click();
      await page.waitForURL('**/owner/models');
      await page.getByText('Console Owner (owner)').waitFor();
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.getByRole('link', { name: 'Log in' }).first().waitFor();

      await page.goto('/login?next=/?tag=flowers');
      await page.getByLabel('E-mail address').fill(email);
      await page.getByLabel('Password').fill('not the password at all');
      await page.getByRole('button', { name: 'Log in' }).click();
      await page
        .getByRole('alert')
        .getByText(/e-mail address and password do not match/)
        .waitFor();
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'log-in');
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.waitForURL((url) => url.pathname === '/' && url.searchParams.get('tag') === 'flowers');
      assert.deepEqual(await cardNames(page), ['Iris']);
      // Only a path of this console: an address elsewhere is not followed.
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.goto('/login?next=//example.com/');
      await page.getByLabel('E-mail address').fill(email);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('button', { name: 'Log out' }).waitFor();
      assert.equal(new URL(page.url()).origin, server.origin);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('is usable by keyboard and has no serious accessibility violations', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/');
      await cardNames(page);
      const reached = await keyboardReachable(page);
      for (const control of ['input:Search', 'select:Task', 'input:Tag', 'button:Search', 'button:Next']) {
        assert.ok(
          reached.some((name) => name.startsWith(control)),
          `${control} not reached: ${reached.join(' | ')}`,
        );
      }
      assert.deepEqual(await accessibilityViolations(page), []);
      await screenshot(page, 'marketplace');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
