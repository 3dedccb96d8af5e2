import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deriveMarkKey, MARK_BITS, WatermarkError } from '../../src/watermark/index.js';
import { SECRET } from './support.js';

describe('deriveMarkKey', () => {
  it('is a function of (secret, purpose, id) only', () => {
    const a = deriveMarkKey(SECRET, 'owner', 'version-1');
    const b = deriveMarkKey(Buffer.from(SECRET), 'owner', 'version-1');
    assert.deepEqual(a.bits, b.bits);
    assert.deepEqual(a.carrierKey, b.carrierKey);
    assert.equal(a.bits.length, MARK_BITS);
    assert.ok(a.bits.every((bit) => bit === 0 || bit === 1));
  });

  it('gives independent keys for another id, purpose or secret', () => {
    const base = deriveMarkKey(SECRET, 'owner', 'version-1');
    for (const other of [
      deriveMarkKey(SECRET, 'owner', 'version-2'),
      deriveMarkKey(SECRET, 'licensee', 'version-1'),
      deriveMarkKey(Buffer.from('another secret of enough length'), 'owner', 'version-1'),
    ]) {
      assert.notDeepEqual(other.carrierKey, base.carrierKey);
      const agreeing = base.bits.filter((bit, i) => bit === other.bits[i]).length;
      assert.ok(agreeing > 90 && agreeing < 166, `${agreeing} of 256 target bits agree`); // Binomial(256, ½): ±4.75σ
    }
  });

  it('rejects short secrets and empty ids', () => {
    assert.throws(() => deriveMarkKey(Buffer.alloc(8), 'owner', 'v'), WatermarkError);
    assert.throws(() => deriveMarkKey(SECRET, 'owner', ''), WatermarkError);
  });
});
