// Browser sessions over real HTTP: the refresh token in an HttpOnly cookie, refreshed and ended only by requests
// that show they come from our own pages (the x-csrf-token header repeating the mm_csrf cookie, our own Origin).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AUTH_FIELDS, expectError, signUp, uniqueEmail } from '../support/fixtures.js';
import { startTestServer, type GraphQLResponse, type TestServer } from '../support/server.js';

const LOG_IN = `mutation LogIn($input: LogInInput!) { logIn(input: $input) { ${AUTH_FIELDS} } }`;
const SIGN_UP = `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { ${AUTH_FIELDS} } }`;
const REFRESH = `mutation { refreshSession(input: {}) { ${AUTH_FIELDS} } }`;
const LOG_OUT = 'mutation { logOut(input: {}) }';
const ME = '{ me { id } }';
const THIRTY_DAYS = 30 * 86_400;

interface SetCookie {
  value: string;
  /** Attribute names in lower case; flags map to ''. */
  attributes: Map<string, string>;
}

interface Answer extends GraphQLResponse {
  cookies: Map<string, SetCookie>;
}

/** The cookies a browser holds for the session: both go back with each request, the CSRF token as a header too. */
interface BrowserJar {
  refresh: string;
  csrf: string;
}

function setCookies(headers: Headers): Map<string, SetCookie> {
  const cookies = new Map<string, SetCookie>();
  for (const line of headers.getSetCookie()) {
    const [pair, ...rest] = line.split(';').map((part) => part.trim());
    const equals = pair!.indexOf('=');
    const attributes = new Map<string, string>();
    for (const attribute of rest) {
      const [name, value = ''] = attribute.split('=');
      attributes.set(name!.toLowerCase(), value);
    }
    cookies.set(pair!.slice(0, equals), { value: decodeURIComponent(pair!.slice(equals + 1)), attributes });
  }
  return cookies;
}

/** The jar after an answer that set both cookies. */
function jarOf(answer: Answer): BrowserJar {
  const refresh = answer.cookies.get('mm_refresh')?.value;
  const csrf = answer.cookies.get('mm_csrf')?.value;
  assert.ok(refresh && csrf, `both cookies set: ${JSON.stringify([...answer.cookies.keys()])}`);
  return { refresh, csrf };
}

/** What the console sends: both cookies, and the CSRF cookie's value in the header. */
const fromConsole = (jar: BrowserJar, extra: Record<string, string> = {}) => ({
  cookie: `mm_refresh=${encodeURIComponent(jar.refresh)}; mm_csrf=${encodeURIComponent(jar.csrf)}`,
  'x-csrf-token': jar.csrf,
  ...extra,
});

function assertCleared(answer: Answer) {
  for (const name of ['mm_refresh', 'mm_csrf']) {
    const cookie = answer.cookies.get(name);
    assert.ok(cookie, `${name} cleared`);
    assert.equal(cookie.value, '');
    assert.equal(cookie.attributes.get('max-age'), '0');
  }
}

describe('browser sessions: the refresh token in an HttpOnly cookie, with a CSRF defence', () => {
  let server: TestServer;
  let post: (query: string, variables?: Record<string, unknown>, headers?: Record<string, string>) => Promise<Answer>;
  /** A fresh account logged in with session: COOKIE; its answer and cookies. */
  let browserLogIn: (headers?: Record<string, string>) => Promise<{ answer: Answer; jar: BrowserJar; userId: string }>;

  before(async () => {
    // Trusting a proxy's X-Forwarded-Proto is what makes cookies Secure behind a TLS-terminating proxy.
    server = await startTestServer({ TRUST_PROXY: 'true' });
    post = async (query, variables = {}, headers = {}) => {
      const response = await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: any; errors?: any[] };
      return { ...body, status: response.status, headers: response.headers, cookies: setCookies(response.headers) };
    };
    browserLogIn = async (headers = {}) => {
      const user = await signUp(server);
      const answer = await post(
        LOG_IN,
        { input: { email: user.email, password: user.password, session: 'COOKIE' } },
        headers,
      );
      assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
      return { answer, jar: jarOf(answer), userId: user.id };
    };
  });
  after(() => server.close());

  it('logs in with session: COOKIE: an HttpOnly, SameSite=Strict refresh cookie for /graphql and a readable CSRF cookie', async () => {
    const { answer, userId } = await browserLogIn();
    const payload = answer.data!.logIn;
    assert.equal(payload.refreshToken, null, 'the refresh token is in the cookie only');
    assert.equal(payload.user.id, userId);
    assert.equal((await server.gql(ME, {}, { token: payload.accessToken })).data!.me.id, userId);

    const refresh = answer.cookies.get('mm_refresh')!;
    assert.match(refresh.value, /^mmr_/);
    assert.equal(refresh.attributes.get('path'), '/graphql');
    assert.equal(refresh.attributes.get('samesite'), 'Strict');
    assert.ok(refresh.attributes.has('httponly'));
    assert.ok(!refresh.attributes.has('secure'), 'not Secure over plain http');
    const maxAge = Number(refresh.attributes.get('max-age'));
    assert.ok(maxAge > THIRTY_DAYS - 60 && maxAge <= THIRTY_DAYS, `Max-Age is the session's lifetime: ${maxAge}`);

    const csrf = answer.cookies.get('mm_csrf')!;
    assert.match(csrf.value, /^[\w-]{43}$/);
    assert.equal(csrf.attributes.get('path'), '/');
    assert.equal(csrf.attributes.get('samesite'), 'Strict');
    assert.ok(!csrf.attributes.has('httponly'), "the console's script reads it");
    assert.ok(!csrf.attributes.has('secure'));
    assert.equal(csrf.attributes.get('max-age'), refresh.attributes.get('max-age'));
  });

  it('signs up with session: COOKIE the same way', async () => {
    const email = uniqueEmail('cookie');
    const input = {
      email,
      password: 'a sturdy passphrase',
      displayName: 'Cookie',
      role: 'CONSUMER',
      session: 'COOKIE',
    };
    const answer = await post(SIGN_UP, { input });
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    assert.equal(answer.data!.signUp.refreshToken, null);
    const refreshed = await post(REFRESH, {}, fromConsole(jarOf(answer)));
    assert.equal(refreshed.errors, undefined, JSON.stringify(refreshed.errors));
    assert.equal(refreshed.data!.refreshSession.user.email, email);
  });

  it('marks both cookies Secure behind a trusted proxy that says the client came over https', async () => {
    const host = 'console.example.com';
    const proxied = { 'x-forwarded-proto': 'https', 'x-forwarded-host': host };
    const { answer, jar } = await browserLogIn(proxied);
    for (const name of ['mm_refresh', 'mm_csrf']) assert.ok(answer.cookies.get(name)!.attributes.has('secure'), name);
    // Its origin is the one the browser addressed through the proxy.
    const refreshed = await post(REFRESH, {}, fromConsole(jar, { ...proxied, origin: `https://${host}` }));
    assert.equal(refreshed.errors, undefined, JSON.stringify(refreshed.errors));
    assert.ok(refreshed.cookies.get('mm_refresh')!.attributes.has('secure'));
  });

  it('refreshes from the cookie with the CSRF header, rotating both cookies', async () => {
    const { jar, userId } = await browserLogIn();
    const first = await post(REFRESH, {}, fromConsole(jar, { origin: server.origin }));
    assert.equal(first.errors, undefined, JSON.stringify(first.errors));
    const payload = first.data!.refreshSession;
    assert.equal(payload.refreshToken, null);
    assert.equal(payload.user.id, userId);
    assert.equal((await server.gql(ME, {}, { token: payload.accessToken })).data!.me.id, userId);
    const rotated = jarOf(first);
    assert.notEqual(rotated.refresh, jar.refresh);
    assert.notEqual(rotated.csrf, jar.csrf);
    // The new pair works in turn (no Origin: a same-origin GET-less fetch may omit it).
    const second = await post(REFRESH, {}, fromConsole(rotated));
    assert.equal(second.errors, undefined, JSON.stringify(second.errors));
  });

  it('refuses a cookie refresh without the right CSRF header or from a foreign origin, and changes nothing', async () => {
    const { jar, userId } = await browserLogIn();
    const cookieOnly = { cookie: fromConsole(jar).cookie };
    const refusals = [
      await post(REFRESH, {}, cookieOnly),
      await post(REFRESH, {}, { ...cookieOnly, 'x-csrf-token': `${jar.csrf}x` }),
      await post(REFRESH, {}, { ...cookieOnly, 'x-csrf-token': '' }),
      // The header alone, without the cookie it must repeat.
      await post(REFRESH, {}, { cookie: `mm_refresh=${jar.refresh}`, 'x-csrf-token': jar.csrf }),
      await post(LOG_OUT, {}, cookieOnly),
    ];
    for (const refused of refusals) {
      assert.match(expectError(refused, 'FORBIDDEN').message, /x-csrf-token header must repeat the mm_csrf cookie/);
      assert.equal(refused.cookies.size, 0, 'no cookie is set or cleared');
    }
    for (const origin of ['https://evil.example', 'null', server.origin.replace('127.0.0.1', 'localhost')]) {
      const foreign = await post(REFRESH, {}, fromConsole(jar, { origin }));
      assert.match(expectError(foreign, 'FORBIDDEN').message, /only from this server's own pages/);
      assert.equal(foreign.cookies.size, 0);
    }
    const { rows } = await server.sql.query(
      `SELECT count(*)::int AS changed FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
       WHERE s.user_id = $1 AND (rt.used_at IS NOT NULL OR s.revoked_at IS NOT NULL)`,
      [userId],
    );
    assert.equal(rows[0].changed, 0, 'no token spent, no session ended');
    const refreshed = await post(REFRESH, {}, fromConsole(jar, { origin: server.origin }));
    assert.equal(refreshed.errors, undefined, JSON.stringify(refreshed.errors));
  });

  it('answers UNAUTHENTICATED without a session cookie', async () => {
    const noCookie = await post(REFRESH, {}, { 'x-csrf-token': '' });
    assert.match(expectError(noCookie, 'UNAUTHENTICATED').message, /No session cookie/);
    expectError(await post(LOG_OUT, {}), 'UNAUTHENTICATED');
  });

  it('refuses a session or CSRF cookie sent twice (one planted by a sibling subdomain) and clears both', async () => {
    const victim = (await browserLogIn()).jar;
    // The attacker's own valid session, planted with Domain=the parent domain: the browser sends it beside ours.
    const planted = (await browserLogIn()).jar;
    const cookie = (first: BrowserJar, names: string[]) =>
      `${names.map((name) => `${name}=${encodeURIComponent(name === 'mm_refresh' ? first.refresh : first.csrf)}`).join('; ')}; ${fromConsole(victim).cookie}`;
    for (const names of [['mm_refresh', 'mm_csrf'], ['mm_refresh'], ['mm_csrf']]) {
      const headers = {
        cookie: cookie(planted, names),
        'x-csrf-token': names.includes('mm_csrf') ? planted.csrf : victim.csrf,
      };
      for (const mutation of [REFRESH, LOG_OUT]) {
        const refused = await post(mutation, {}, headers);
        assert.match(expectError(refused, 'UNAUTHENTICATED').message, /came twice/, `${names}`);
        assertCleared(refused);
      }
    }
    // Neither session was used: each still refreshes from its own cookies.
    for (const jar of [victim, planted]) {
      const refreshed = await post(REFRESH, {}, fromConsole(jar));
      assert.equal(refreshed.errors, undefined, JSON.stringify(refreshed.errors));
    }
  });

  it('ends the session when a spent cookie token is presented again, and clears the cookies', async () => {
    const { jar, answer } = await browserLogIn();
    const rotated = await post(REFRESH, {}, fromConsole(jar));
    const newest = jarOf(rotated);
    // A stolen copy of the first cookie, replayed.
    const replayed = await post(REFRESH, {}, fromConsole(jar));
    expectError(replayed, 'UNAUTHENTICATED');
    assertCleared(replayed);
    expectError(await post(REFRESH, {}, fromConsole(newest)), 'UNAUTHENTICATED');
    for (const token of [answer.data!.logIn.accessToken, rotated.data!.refreshSession.accessToken]) {
      expectError(await server.gql(ME, {}, { token }), 'UNAUTHENTICATED');
    }
  });

  it('logs out from the cookie: the session ends and both cookies are cleared', async () => {
    const { jar, answer } = await browserLogIn();
    const out = await post(LOG_OUT, {}, fromConsole(jar, { origin: server.origin }));
    assert.equal(out.errors, undefined, JSON.stringify(out.errors));
    assert.equal(out.data!.logOut, true);
    assertCleared(out);
    for (const name of ['mm_refresh', 'mm_csrf']) {
      assert.equal(out.cookies.get(name)!.attributes.get('path'), name === 'mm_refresh' ? '/graphql' : '/');
    }
    expectError(await post(REFRESH, {}, fromConsole(jar)), 'UNAUTHENTICATED');
    expectError(await server.gql(ME, {}, { token: answer.data!.logIn.accessToken }), 'UNAUTHENTICATED');
  });

  it('keeps the BODY form as it was: the refresh token in the answer and no cookies', async () => {
    const user = await signUp(server);
    const logIn = await post(LOG_IN, { input: { email: user.email, password: user.password } });
    assert.equal(logIn.errors, undefined, JSON.stringify(logIn.errors));
    assert.match(logIn.data!.logIn.refreshToken, /^mmr_/);
    assert.equal(logIn.cookies.size, 0);
    const refresh = `mutation R($input: RefreshSessionInput!) { refreshSession(input: $input) { ${AUTH_FIELDS} } }`;
    const refreshed = await post(refresh, { input: { refreshToken: logIn.data!.logIn.refreshToken } });
    assert.equal(refreshed.errors, undefined, JSON.stringify(refreshed.errors));
    assert.match(refreshed.data!.refreshSession.refreshToken, /^mmr_/);
    assert.equal(refreshed.cookies.size, 0);
    const out = await post('mutation O($input: LogOutInput!) { logOut(input: $input) }', {
      input: { refreshToken: refreshed.data!.refreshSession.refreshToken },
    });
    assert.equal(out.data!.logOut, true);
    assert.equal(out.cookies.size, 0);
  });

  it('refuses input together with the deprecated arguments, and a log-in with neither', async () => {
    const user = await signUp(server);
    const both = await post(
      `mutation { logIn(email: "${user.email}", input: { email: "${user.email}", password: "x" }) { accessToken } }`,
    );
    assert.equal(expectError(both, 'BAD_USER_INPUT').extensions!.field, 'input.email');
    const refreshBoth = await post(
      `mutation R($t: String!) { refreshSession(refreshToken: $t, input: { refreshToken: $t }) { accessToken } }`,
      { t: user.refreshToken },
    );
    expectError(refreshBoth, 'BAD_USER_INPUT');
    expectError(await post('mutation { logIn { accessToken } }'), 'BAD_USER_INPUT');
    // The refused refresh spent nothing.
    const refresh = `mutation R($t: String!) { refreshSession(refreshToken: $t) { accessToken } }`;
    assert.equal((await post(refresh, { t: user.refreshToken })).errors, undefined);
  });
});
