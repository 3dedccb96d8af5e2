import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { buildSchema as parseSdl, isObjectType } from 'graphql';
import { assertAllowed, buildSchema, SCHEMA_PATH } from '../../src/server/schema.js';
import type { Principal } from '../../src/auth/principal.js';

const user = (role: 'CONSUMER' | 'OWNER' | 'ADMIN'): Principal => ({ kind: 'user', userId: 'u', role, sessionId: 's' });
const key = (scopes: ('PREDICT' | 'READ_USAGE' | 'MANAGE_MODELS')[]): Principal => ({
  kind: 'apiKey',
  userId: 'u',
  role: 'OWNER',
  apiKeyId: 'k',
  scopes,
});
const codeOf = (fn: () => void) => {
  try {
    fn();
    return 'ALLOWED';
  } catch (error) {
    return (error as { extensions: { code: string } }).extensions.code;
  }
};

describe('function-level authorization', () => {
  it('gives every Query and Mutation field exactly one of @auth or @public', () => {
    const schema = parseSdl(readFileSync(SCHEMA_PATH, 'utf8'));
    for (const typeName of ['Query', 'Mutation']) {
      const type = schema.getType(typeName);
      assert.ok(isObjectType(type));
      for (const field of Object.values(type.getFields())) {
        const directives = field
          .astNode!.directives!.map((d) => d.name.value)
          .filter((n) => n === 'auth' || n === 'public');
        assert.equal(directives.length, 1, `${typeName}.${field.name}`);
      }
    }
    assert.doesNotThrow(() => buildSchema());
  });

  it('decides by principal, role and scope', () => {
    const adminOnly = { roles: ['ADMIN' as const] };
    const predict = { scope: 'PREDICT' as const };
    assert.equal(
      codeOf(() => assertAllowed({ kind: 'anonymous' }, {})),
      'UNAUTHENTICATED',
    );
    assert.equal(
      codeOf(() => assertAllowed(user('CONSUMER'), {})),
      'ALLOWED',
    );
    assert.equal(
      codeOf(() => assertAllowed(user('OWNER'), adminOnly)),
      'FORBIDDEN',
    );
    assert.equal(
      codeOf(() => assertAllowed(user('ADMIN'), adminOnly)),
      'ALLOWED',
    );
    assert.equal(
      codeOf(() => assertAllowed(key(['PREDICT']), {})),
      'FORBIDDEN',
    );
    assert.equal(
      codeOf(() => assertAllowed(key(['READ_USAGE']), predict)),
      'FORBIDDEN',
    );
    assert.equal(
      codeOf(() => assertAllowed(key(['PREDICT']), predict)),
      'ALLOWED',
    );
    assert.equal(
      codeOf(() => assertAllowed(user('CONSUMER'), predict)),
      'ALLOWED',
    );
  });
});
