import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashPassword, OWASP_SCRYPT_COST, verifyPassword } from '../../src/auth/password.js';
import { assertAcceptablePassword } from '../../src/auth/password-policy.js';

describe('password hashing', () => {
  it('hashes at the OWASP cost (N=2^17, r=8, p=1) and verifies', async () => {
    const hash = await hashPassword('correct horse battery staple');
    assert.match(hash, /^scrypt\$17\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    assert.deepEqual(await verifyPassword('correct horse battery staple', hash, OWASP_SCRYPT_COST), {
      ok: true,
      needsRehash: false,
    });
    assert.deepEqual(await verifyPassword('correct horse battery stapler', hash, OWASP_SCRYPT_COST), {
      ok: false,
      needsRehash: false,
    });
  });

  it('salts every hash', async () => {
    const cost = { log2N: 10, r: 8, p: 1 };
    assert.notEqual(await hashPassword('same password', cost), await hashPassword('same password', cost));
  });

  it('asks for a rehash only when the stored cost is below the wanted one', async () => {
    const weak = await hashPassword('a passphrase', { log2N: 10, r: 8, p: 1 });
    assert.deepEqual(await verifyPassword('a passphrase', weak, OWASP_SCRYPT_COST), { ok: true, needsRehash: true });
    assert.deepEqual(await verifyPassword('wrong', weak, OWASP_SCRYPT_COST), { ok: false, needsRehash: false });
  });

  it('rejects unparseable stored values', async () => {
    for (const stored of ['', 'bcrypt$x', 'scrypt$x$8$1$a$b', 'scrypt$10$8$1$$']) {
      assert.equal((await verifyPassword('x', stored, OWASP_SCRYPT_COST)).ok, false);
    }
  });

  it('applies the policy: length, not the e-mail, not common', () => {
    assert.throws(() => assertAcceptablePassword('short', 'a@b.co', 'p'), /at least 10/);
    assert.throws(() => assertAcceptablePassword('x'.repeat(257), 'a@b.co', 'p'), /at most 256/);
    assert.throws(() => assertAcceptablePassword('Alice@Example.com', 'alice@example.com', 'p'), /e-mail/);
    assert.throws(() => assertAcceptablePassword('QWERTYUIOP', 'a@b.co', 'p'), /common/);
    assert.doesNotThrow(() => assertAcceptablePassword('a sturdy passphrase', 'a@b.co', 'p'));
  });
});
