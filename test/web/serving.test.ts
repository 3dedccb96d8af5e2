// The console and GraphiQL are served by the API server itself, with no CDN: pages to browsers, files from the
// build, and the API's own answers unchanged for API clients.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { accessibilityViolations, launchBrowser, openConsole } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

const PAGE = { accept: 'text/html,application/xhtml+xml' };

describe('serving the console', () => {
  let server: TestServer;
  let production: TestServer;
  let browser: Browser;
  before(async () => {
    [server, production, browser] = await Promise.all([
      startTestServer(),
      startTestServer({ MODE: 'production', APP_SECRET: 'p'.repeat(40) }),
      launchBrowser(),
    ]);
  });
  after(async () => {
    await Promise.all([server?.close(), production?.close(), browser?.close()]);
  });

  it('serves the console at / with a content security policy, and its hashed assets cached for good', async () => {
    const page = await fetch(`${server.origin}/`, { headers: PAGE });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await page.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(script, html);
    const asset = await fetch(`${server.origin}${script}`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('cache-control') ?? '', /immutable/);
    assert.doesNotMatch(html, /https?:\/\//, 'nothing is loaded from another origin');
  });

  it("answers a browser's deep link with the console's page, and API clients with the API's 404", async () => {
    const deep = await fetch(`${server.origin}/models/some-model`, { headers: PAGE });
    assert.equal(deep.status, 200);
    assert.match(await deep.text(), /<div id="root">/);
    const api = await fetch(`${server.origin}/models/some-model`);
    assert.equal(api.status, 404);
    assert.equal(((await api.json()) as any).errors[0].extensions.code, 'NOT_FOUND');
    const post = await fetch(`${server.origin}/index.html`, { method: 'POST', headers: PAGE });
    assert.equal(post.status, 404);
  });

  it('serves the bundled GraphiQL at /graphql to browsers in development, and not in production', async () => {
    const ide = await fetch(`${server.origin}/graphql`, { headers: PAGE });
    assert.equal(ide.status, 200);
    assert.match(await ide.text(), /id="graphiql"/);
    const off = await fetch(`${production.origin}/graphql`, { headers: PAGE });
    assert.notEqual(off.status, 200);
    assert.doesNotMatch(await off.text(), /graphiql/i);
    const api = await server.gql('{ me { id } }');
    assert.deepEqual(api.data, { me: null });
  });

  it("does not hand out GraphiQL's page as a file when it is off, under any of the names sirv answers", async () => {
    const asFile = await fetch(`${server.origin}/graphiql.html`);
    assert.equal(asFile.status, 200, 'in development the file is there');
    assert.match(await asFile.text(), /id="graphiql"/);
    for (const path of ['/graphiql.html', '/graphiql', '/graphiql/', '/graphiql.htm', '/%67raphiql.html']) {
      const api = await fetch(`${production.origin}${path}`);
      assert.equal(api.status, 404, path);
      assert.doesNotMatch(await api.text(), /id="graphiql"/, path);
      const page = await fetch(`${production.origin}${path}`, { headers: PAGE });
      assert.doesNotMatch(await page.text(), /id="graphiql"/, `${path}: the console's page instead`);
    }
  });

  it('GraphiQL runs offline in a real browser and queries the API', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      const requests: string[] = [];
      page.on('request', (request) => requests.push(request.url()));
      await page.goto('/graphql');
      await page.getByRole('button', { name: /execute query/i }).waitFor();
      assert.deepEqual(
        requests.filter(
          (url) => !url.startsWith(server.origin) && !url.startsWith('blob:') && !url.startsWith('data:'),
        ),
        [],
      );
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('the console loads in a real browser with no errors and no serious accessibility violations', async () => {
    const { page, context, errors } = await openConsole(browser, server.origin);
    try {
      await page.goto('/');
      await page.getByRole('navigation', { name: 'Main' }).waitFor();
      assert.deepEqual(await accessibilityViolations(page), []);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
