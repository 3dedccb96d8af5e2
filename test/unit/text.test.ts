// Free text from clients is checked for what PostgreSQL can store, multi-line text included: the front door
// refuses such text over HTTP, and the services' own checks hold on their own (e.g. for text read elsewhere).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GraphQLError } from 'graphql';
import { checkRequestId, cleanText } from '../../src/server/text.js';

const refused = (run: () => unknown, field: string) =>
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof GraphQLError);
    assert.equal(error.extensions.code, 'BAD_USER_INPUT');
    assert.equal(error.extensions.field, field);
    return true;
  });

describe('cleanText and checkRequestId', () => {
  it('refuse NUL and lone surrogates, in multi-line text too', () => {
    for (const raw of ['a\u0000b', 'line one\nline\u0000two', 'a\ud800', '\udc00b', 'x\ud83d']) {
      refused(() => cleanText(raw, 'input.description', { max: 5000, min: 0 }), 'input.description');
      refused(() => cleanText(raw, 'input.name', { max: 100, singleLine: true }), 'input.name');
      refused(() => checkRequestId(raw, 'input.requestId'), 'input.requestId');
    }
  });

  it('keep well-formed text: surrogate pairs, newlines in multi-line text', () => {
    assert.equal(cleanText(' Hello 😀\nworld ', 'input.description', { max: 100, min: 0 }), 'Hello 😀\nworld');
    assert.equal(checkRequestId('order-😀-42', 'input.requestId'), 'order-😀-42');
  });

  it('checkRequestId refuses control characters and lengths outside 1 to 255', () => {
    for (const raw of ['', 'x'.repeat(256), 'a\tb', 'a\nb', 'a\u007fb']) {
      refused(() => checkRequestId(raw, 'input.requestId'), 'input.requestId');
    }
    assert.equal(checkRequestId('x'.repeat(255), 'input.requestId').length, 255);
  });
});
