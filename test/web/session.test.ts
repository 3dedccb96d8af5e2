// A browser session in a real browser: logged in with session: COOKIE from the console's own origin, the session
// survives a reload (the console exchanges its HttpOnly cookie, which no script can read, for an access token)
// and ends at log-out.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, openConsole } from '../support/browser.js';
import { signUp } from '../support/fixtures.js';
import { startTestServer, type TestServer } from '../support/server.js';

/**
 * Posts a GraphQL operation from the page, as the console does: its cookies go with it, and the mm_csrf cookie's
 * value as the x-csrf-token header. A string, not a function: the test project's types have no DOM.
 */
function postFromPage(page: Page, query: string, variables: Record<string, unknown> = {}): Promise<any> {
  return page.evaluate(`(async () => {
    const csrf = /(?:^|;\\s*)mm_csrf=([^;]+)/.exec(document.cookie);
    const response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf ? decodeURIComponent(csrf[1]) : '' },
      body: JSON.stringify({ query: ${JSON.stringify(query)}, variables: ${JSON.stringify(variables)} }),
    });
    return response.json();
  })()`);
}

const isRefresh = (postData: string | null) => postData?.includes('refreshSession') ?? false;

describe('browser sessions in the console', () => {
  let server: TestServer;
  let browser: Browser;
  before(async () => {
    [server, browser] = await Promise.all([startTestServer(), launchBrowser()]);
  });
  after(async () => {
    await Promise.all([server?.close(), browser?.close()]);
  });

  it('keeps a cookie session across a reload, out of reach of scripts, until log-out', async () => {
    const user = await signUp(server);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/');
      await page.getByRole('navigation', { name: 'Main' }).waitFor();

      const logIn = await postFromPage(
        page,
        'mutation L($input: LogInInput!) { logIn(input: $input) { accessToken refreshToken user { id } } }',
        { input: { email: user.email, password: user.password, session: 'COOKIE' } },
      );
      assert.equal(logIn.errors, undefined, JSON.stringify(logIn.errors));
      assert.equal(logIn.data.logIn.refreshToken, null);
      const stored = await context.cookies();
      const refreshCookie = stored.find((cookie) => cookie.name === 'mm_refresh');
      assert.ok(refreshCookie, 'the browser keeps the refresh cookie');
      assert.equal(refreshCookie.httpOnly, true);
      assert.equal(refreshCookie.sameSite, 'Strict');
      assert.equal(refreshCookie.path, '/graphql');
      assert.ok(stored.some((cookie) => cookie.name === 'mm_csrf' && !cookie.httpOnly));

      // The reload forgets the access token (memory only); the console restores the session from the cookie.
      const restored = page.waitForResponse(
        (response) => response.url().endsWith('/graphql') && isRefresh(response.request().postData()),
      );
      await page.reload();
      const answer = (await (await restored).json()) as any;
      assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
      assert.equal(answer.data.refreshSession.user.id, user.id);
      await page.getByText('Test User (consumer)').waitFor();

      // The page's scripts see the CSRF token, never the refresh token; a refresh from the page works in turn.
      const visible = await page.evaluate<string>('document.cookie');
      assert.match(visible, /mm_csrf=/);
      assert.doesNotMatch(visible, /mm_refresh/);
      const again = await postFromPage(page, 'mutation { refreshSession(input: {}) { accessToken user { id } } }');
      assert.equal(again.errors, undefined, JSON.stringify(again.errors));
      assert.equal(again.data.refreshSession.user.id, user.id);

      const out = await postFromPage(page, 'mutation { logOut(input: {}) }');
      assert.equal(out.data?.logOut, true, JSON.stringify(out));
      assert.deepEqual(
        (await context.cookies()).filter((cookie) => cookie.name.startsWith('mm_')),
        [],
        'log-out clears both cookies',
      );
      const signedOut = page.waitForResponse(
        (response) => response.url().endsWith('/graphql') && isRefresh(response.request().postData()),
      );
      await page.reload();
      assert.equal(((await (await signedOut).json()) as any).errors[0].extensions.code, 'UNAUTHENTICATED');
      await page.getByRole('navigation', { name: 'Main' }).waitFor();
      assert.equal(await page.getByText('Test User (consumer)').count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('survives several tabs reloading at once (they take turns with the single-use refresh token)', async () => {
    const user = await signUp(server);
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/');
      const logIn = await postFromPage(
        page,
        'mutation L($input: LogInInput!) { logIn(input: $input) { accessToken } }',
        {
          input: { email: user.email, password: user.password, session: 'COOKIE' },
        },
      );
      assert.equal(logIn.errors, undefined, JSON.stringify(logIn.errors));
      const tabs = [page, await context.newPage(), await context.newPage()];
      // Without the turns, the second tab would replay the token the first had spent, and that ends the session.
      await Promise.all(tabs.map((tab) => tab.goto('/')));
      for (const tab of tabs) await tab.getByText('Test User (consumer)').waitFor();
      await page.reload();
      await page.getByText('Test User (consumer)').waitFor();
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
