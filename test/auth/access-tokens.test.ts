import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomUUID, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { startTestServer, type TestServer } from '../support/server.js';
import { expectError, signUp } from '../support/fixtures.js';

const ME = '{ me { id } }';

describe('access tokens: JWT verification', () => {
  let server: TestServer;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  let user: Awaited<ReturnType<typeof signUp>>;
  let kid: string;
  let sid: string;

  before(async () => {
    server = await startTestServer({
      JWT_PRIVATE_KEY: privatePem,
      JWT_ISSUER: 'https://mm.test',
      JWT_AUDIENCE: 'mm-api',
    });
    user = await signUp(server);
    const decoded = jwt.decode(user.token, { complete: true })!;
    kid = decoded.header.kid!;
    sid = (decoded.payload as jwt.JwtPayload).sid;
  });
  after(() => server.close());

  const claims = () => ({ sid });
  const options = (overrides: jwt.SignOptions = {}): jwt.SignOptions => ({
    algorithm: 'ES256',
    keyid: kid,
    issuer: 'https://mm.test',
    audience: 'mm-api',
    subject: user.id,
    expiresIn: 60,
    jwtid: randomUUID(),
    ...overrides,
  });
  const expectRejected = async (token: string) => {
    const res = await server.gql(ME, {}, { token });
    expectError(res, 'UNAUTHENTICATED');
    assert.equal(res.status, 401);
  };

  it('issues ES256 tokens with iss, aud, sub, exp, iat, jti and a kid', () => {
    const { header, payload } = jwt.decode(user.token, { complete: true }) as {
      header: jwt.JwtHeader;
      payload: jwt.JwtPayload;
    };
    assert.equal(header.alg, 'ES256');
    assert.ok(header.kid);
    assert.equal(payload.iss, 'https://mm.test');
    assert.equal(payload.aud, 'mm-api');
    assert.equal(payload.sub, user.id);
    assert.equal(payload.exp! - payload.iat!, 900);
    assert.ok(payload.jti);
  });

  it('accepts a token forged by nobody: one signed with the real key and right claims', async () => {
    const token = jwt.sign(claims(), privateKey, options());
    const res = await server.gql(ME, {}, { token });
    assert.equal(res.data!.me.id, user.id);
  });

  it('rejects alg none', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid })).toString('base64url');
    const body = Buffer.from(
      JSON.stringify({
        sid,
        sub: user.id,
        iss: 'https://mm.test',
        aud: 'mm-api',
        exp: Math.floor(Date.now() / 1000) + 60,
        jti: 'x',
      }),
    ).toString('base64url');
    await expectRejected(`${header}.${body}.`);
  });

  it('rejects an HMAC token keyed with the public key', async () => {
    const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    const token = jwt.sign(claims(), publicPem, { ...options(), algorithm: 'HS256' });
    await expectRejected(token);
  });

  it('rejects an expired token', async () => {
    const { expiresIn: _unused, ...withoutExpiry } = options();
    const now = Math.floor(Date.now() / 1000);
    const token = jwt.sign({ ...claims(), iat: now - 3600, exp: now - 60 }, privateKey, withoutExpiry);
    await expectRejected(token);
    // Ours and expired: said so (RFC 6750), so the client refreshes it, in GraphQL and on the plain routes.
    const res = await server.gql(ME, {}, { token });
    assert.match(res.errors![0]!.message, /access token expired: get a new one with refreshSession/);
    assert.equal(res.errors![0]!.extensions!.reason, 'TOKEN_EXPIRED');
    assert.match(res.headers.get('www-authenticate')!, /^Bearer error="invalid_token", error_description=".*expired"$/);
    const csv = await fetch(`${server.origin}/v1/usage.csv`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(csv.status, 401);
    assert.match(csv.headers.get('www-authenticate')!, /error="invalid_token"/);
    // The same claims under a key that is not ours: invalid, never "expired" (the signature is checked first).
    const foreign = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const forged = await server.gql(
      ME,
      {},
      { token: jwt.sign({ ...claims(), iat: now - 3600, exp: now - 60 }, foreign, withoutExpiry) },
    );
    expectError(forged, 'UNAUTHENTICATED');
    assert.doesNotMatch(forged.errors![0]!.message, /expired/);
  });

  it('rejects a tampered token', async () => {
    const other = await signUp(server);
    const [header, , signature] = user.token.split('.');
    const payload = { ...(jwt.decode(user.token) as jwt.JwtPayload), sub: other.id };
    await expectRejected(`${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`);
  });

  it('rejects a foreign issuer, a foreign audience, a foreign key and an unknown kid', async () => {
    await expectRejected(jwt.sign(claims(), privateKey, options({ issuer: 'https://evil.test' })));
    await expectRejected(jwt.sign(claims(), privateKey, options({ audience: 'other-api' })));
    const foreign = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    await expectRejected(jwt.sign(claims(), foreign, options()));
    await expectRejected(jwt.sign(claims(), privateKey, options({ keyid: 'no-such-kid' })));
  });

  it('rejects a token without a session claim and garbage tokens', async () => {
    await expectRejected(jwt.sign({}, privateKey, options()));
    await expectRejected('not.a.jwt');
    const res = await server.gql(ME, {}, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    expectError(res, 'UNAUTHENTICATED');
  });

  it('serves the verification key as a JWKS that verifies issued tokens', async () => {
    const jwks = (await (await fetch(`${server.origin}/.well-known/jwks.json`)).json()) as {
      keys: (JsonWebKey & { kid: string })[];
    };
    const key = jwks.keys.find((k) => k.kid === kid);
    assert.ok(key);
    assert.equal(key.d, undefined, 'the private part must never be served');
    const verified = jwt.verify(user.token, createPublicKey({ key, format: 'jwk' }), { algorithms: ['ES256'] });
    assert.equal((verified as jwt.JwtPayload).sub, user.id);
  });
});

describe('access tokens: key rotation', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('signs with the new key, still verifies the old one until it is retired', async () => {
    const user = await signUp(server);
    const ring = server.app.services.keyRing;
    const oldKid = jwt.decode(user.token, { complete: true })!.header.kid!;
    const newKid = await ring.rotate();
    assert.notEqual(newKid, oldKid);

    const fresh = await signUp(server);
    assert.equal(jwt.decode(fresh.token, { complete: true })!.header.kid, newKid);
    assert.equal((await server.gql(ME, {}, { token: user.token })).data!.me.id, user.id);
    const jwks = (await (await fetch(`${server.origin}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [newKid, oldKid].sort());

    await assert.rejects(() => ring.retire(newKid), /rotate first/);
    assert.equal(await ring.retire(oldKid), true);
    expectError(await server.gql(ME, {}, { token: user.token }), 'UNAUTHENTICATED');
    assert.equal((await server.gql(ME, {}, { token: fresh.token })).data!.me.id, fresh.id);
  });
});
