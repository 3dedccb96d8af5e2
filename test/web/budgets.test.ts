// The console's size budget, on the build `npm test` makes: its page loads at most 300 kB of gzipped
// JavaScript (GraphiQL's Monaco editor is a page of its own and must not leak into it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONSOLE_JS_BUDGET_GZIP_BYTES } from '../../web/src/budget.js';
import { consoleBundle } from '../support/console-bundle.js';

describe('the console bundle', () => {
  it('loads at most 300 kB of gzipped JavaScript, GraphiQL not included', () => {
    const bundle = consoleBundle();
    const listing = bundle.files.map((f) => `${f.file}: ${f.gzipBytes} B gzip`).join('\n');
    assert.ok(bundle.jsGzipBytes > 0, listing);
    assert.ok(bundle.jsGzipBytes <= CONSOLE_JS_BUDGET_GZIP_BYTES, `${bundle.jsGzipBytes} B gzip:\n${listing}`);
    assert.ok(!bundle.files.some((f) => /monaco|graphiql|editor\.worker/i.test(f.file)), listing);
  });

  it('GraphiQL is its own page', () => {
    const graphiql = consoleBundle('graphiql.html');
    assert.ok(graphiql.files.some((f) => /monaco|graphiql/i.test(f.file)));
  });
});
