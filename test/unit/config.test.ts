import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config.js';

describe('config', () => {
  it('has working defaults for a newcomer', () => {
    const config = parseConfig({});
    assert.equal(config.port, 4000);
    assert.equal(config.mode, 'development');
    assert.equal(config.database.url, undefined);
    assert.ok(config.dataDir.endsWith('.data'));
    assert.equal(config.auth.scryptLog2N, 17);
    assert.equal(config.auth.accessTokenTtlSeconds, 900);
    assert.equal(config.graphql.maxCredentialChecks, 3);
    assert.equal(config.graphql.introspection, true);
    assert.equal(config.graphql.exposeErrorDetails, false, 'internals only with DEBUG_ERRORS=true');
    assert.equal(config.metricsToken, undefined);
  });

  it('derives production behaviour from MODE alone, never from NODE_ENV', () => {
    assert.equal(parseConfig({ NODE_ENV: 'production' }).graphql.introspection, true);
    const production = parseConfig({ MODE: 'production' });
    assert.equal(production.graphql.introspection, false);
    assert.equal(production.graphql.ide, false);
    assert.equal(production.graphql.exposeErrorDetails, false);
  });

  it('writes human log lines on a terminal and JSON elsewhere, unless LOG_FORMAT says which', () => {
    assert.equal(parseConfig({}, true).logFormat, 'pretty');
    assert.equal(parseConfig({}, false).logFormat, 'json');
    assert.equal(parseConfig({ LOG_FORMAT: 'json' }, true).logFormat, 'json');
    assert.equal(parseConfig({ LOG_FORMAT: 'pretty' }, false).logFormat, 'pretty');
  });

  it('names every bad variable', () => {
    assert.throws(
      () => parseConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', APP_SECRET: 'short', MODE: 'staging' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.issues.join('\n');
        for (const name of ['PORT', 'DATABASE_URL', 'APP_SECRET', 'MODE'])
          assert.match(text, new RegExp(`^${name}:`, 'm'));
        return true;
      },
    );
  });

  it('takes INFERENCE_BACKEND auto by default, a backend by name, and nothing else', () => {
    assert.equal(parseConfig({}).inference.backend, 'auto');
    for (const name of ['tensorflow', 'wasm', 'cpu'])
      assert.equal(parseConfig({ INFERENCE_BACKEND: name }).inference.backend, name);
    assert.throws(() => parseConfig({ INFERENCE_BACKEND: 'webgl' }), /^  INFERENCE_BACKEND: /m);
  });

  it('requires ADMIN_EMAIL and ADMIN_PASSWORD together, and treats empty values as unset', () => {
    assert.throws(() => parseConfig({ ADMIN_EMAIL: 'a@b.co' }), /together/);
    assert.equal(parseConfig({ DATABASE_URL: '' }).database.url, undefined);
  });
});
