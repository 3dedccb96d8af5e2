import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countCredentialChecks } from '../../src/auth/credential-checks.js';

const count = (body: unknown) => countCredentialChecks(body, 2000);
const LOG_IN = 'logIn(email: "a@b.co", password: "x") { expiresIn }';

describe('countCredentialChecks', () => {
  it('counts each response key once: a repeated field merges, an alias runs again', () => {
    assert.equal(count({ query: `mutation { ${LOG_IN} ${LOG_IN} }` }), 1);
    assert.equal(count({ query: `mutation { a: ${LOG_IN} b: ${LOG_IN} }` }), 2);
  });

  it('follows fragment spreads once each, also through a cycle or a missing fragment', () => {
    const query = `mutation { ...A ...A ...Missing }
      fragment A on Mutation { a: ${LOG_IN} ...B }
      fragment B on Mutation { b: ${LOG_IN} ...A }`;
    assert.equal(count({ query }), 2);
  });

  it('counts only the chosen operation, and no queries', () => {
    const query = `mutation One { a: ${LOG_IN} } mutation Two { a: ${LOG_IN} b: ${LOG_IN} } query Q { me { id } }`;
    assert.equal(count({ query, operationName: 'One' }), 1);
    assert.equal(count({ query, operationName: 'Two' }), 2);
    assert.equal(count({ query }), 3);
  });

  it('counts 0 for what Apollo refuses anyway', () => {
    for (const body of [undefined, null, 'text', {}, { query: 42 }, { query: `mutation { ${LOG_IN}` }, [null]]) {
      assert.equal(count(body), 0);
    }
    assert.equal(count({ query: `mutation { ${'a: me '.repeat(3000)} ${LOG_IN} }` }), 0, 'over maxTokens');
  });
});
