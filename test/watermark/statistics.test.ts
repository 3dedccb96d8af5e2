import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { binomialTail, decide, matchThreshold, WatermarkError, type MarkEvidence } from '../../src/watermark/index.js';

const evidence = (matchedBits: number, id = 'v1'): MarkEvidence => ({
  purpose: 'owner',
  id,
  matchedBits,
  totalBits: 256,
  pValue: binomialTail(matchedBits, 256),
});

describe('binomial tail', () => {
  it('is exact on small cases', () => {
    assert.equal(binomialTail(0, 4), 1);
    assert.ok(Math.abs(binomialTail(3, 4) - 5 / 16) < 1e-15);
    assert.ok(Math.abs(binomialTail(4, 4) - 1 / 16) < 1e-15);
    assert.equal(binomialTail(5, 4), 0);
  });

  it('reaches 2^-256 without underflow', () => {
    assert.ok(Math.abs(binomialTail(256, 256) / 2 ** -256 - 1) < 1e-12);
  });
});

describe('decision rule', () => {
  it('needs 184 of 256 bits for a false-positive rate of 1e-12', () => {
    assert.equal(matchThreshold(256, 1e-12), 184);
    assert.ok(binomialTail(184, 256) <= 1e-12);
    assert.ok(binomialTail(183, 256) > 1e-12);
  });

  it('splits the false-positive rate over the keys tried (Bonferroni)', () => {
    const [single] = decide([evidence(190)], 1);
    assert.equal(single!.threshold, 184);
    assert.equal(single!.verdict, 'MATCH');
    const [corrected] = decide([evidence(190)], 10_000);
    assert.equal(corrected!.threshold, matchThreshold(256, 1e-16));
    assert.ok(corrected!.threshold > 190);
    assert.equal(corrected!.verdict, 'NO_MATCH');
    assert.equal(corrected!.perKeyFalsePositiveRate, 1e-16);
  });

  it('keeps the evidence and decides each key separately', () => {
    const verdicts = decide([evidence(256, 'owner-key'), evidence(131, 'other-key')], 2);
    assert.deepEqual(
      verdicts.map((v) => [v.id, v.matchedBits, v.verdict]),
      [
        ['owner-key', 256, 'MATCH'],
        ['other-key', 131, 'NO_MATCH'],
      ],
    );
  });

  it('refuses fewer keys tried than results', () => {
    assert.throws(() => decide([evidence(200), evidence(200)], 1), WatermarkError);
  });
});
