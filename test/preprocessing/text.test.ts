import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildVocabulary,
  encodeText,
  encodeTokens,
  leadingTokens,
  PAD_ID,
  PAD_TOKEN,
  tokenize,
  UNKNOWN_ID,
  UNKNOWN_TOKEN,
} from '../../src/preprocessing/text.js';

describe('tokenize', () => {
  it('splits on anything that is not a letter, mark or digit', () => {
    assert.deepEqual(tokenize('Hello, world! 42x  foo_bar\ttab-sep', false), [
      'Hello',
      'world',
      '42x',
      'foo',
      'bar',
      'tab',
      'sep',
    ]);
  });

  it('lowercases only when asked', () => {
    assert.deepEqual(tokenize('FREE Money', true), ['free', 'money']);
    assert.deepEqual(tokenize('FREE Money', false), ['FREE', 'Money']);
  });

  it('keeps apostrophes inside words only, reading U+2019 as an apostrophe', () => {
    assert.deepEqual(tokenize("'quoted' don't don\u2019t rock'n'roll '", true), [
      'quoted',
      "don't",
      "don't",
      "rock'n'roll",
    ]);
  });

  it('handles non-Latin scripts and composes decomposed accents', () => {
    assert.deepEqual(tokenize('Größe café Ελληνικά 東京 ١٢٣', true), ['größe', 'café', 'ελληνικά', '東京', '١٢٣']);
    // "e" + U+0301 COMBINING ACUTE ACCENT is the same token as the precomposed "é".
    assert.deepEqual(tokenize('cafe\u0301', false), ['café']);
  });

  it('finds no tokens in punctuation or empty text', () => {
    assert.deepEqual(tokenize('', true), []);
    assert.deepEqual(tokenize(' ... !!! -- ', true), []);
  });
});

describe('buildVocabulary', () => {
  const texts = ['b a c a', 'a b d', 'e'];

  it('puts <pad> and <unk> first, then tokens by count, ties in code-unit order', () => {
    // counts: a 3, b 2, c 1, d 1, e 1
    assert.deepEqual(buildVocabulary(texts, { maxVocab: 100, minCount: 1, lowercase: true }), [
      PAD_TOKEN,
      UNKNOWN_TOKEN,
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
  });

  it('counts the special tokens in maxVocab and drops rare tokens', () => {
    assert.deepEqual(buildVocabulary(texts, { maxVocab: 3, minCount: 1, lowercase: true }), [
      PAD_TOKEN,
      UNKNOWN_TOKEN,
      'a',
    ]);
    assert.deepEqual(buildVocabulary(texts, { maxVocab: 100, minCount: 2, lowercase: true }), [
      PAD_TOKEN,
      UNKNOWN_TOKEN,
      'a',
      'b',
    ]);
  });

  it('merges case only when lowercasing', () => {
    assert.deepEqual(buildVocabulary(['Spam spam SPAM'], { maxVocab: 10, minCount: 1, lowercase: true }), [
      PAD_TOKEN,
      UNKNOWN_TOKEN,
      'spam',
    ]);
    assert.deepEqual(buildVocabulary(['Spam spam SPAM'], { maxVocab: 10, minCount: 1, lowercase: false }), [
      PAD_TOKEN,
      UNKNOWN_TOKEN,
      'SPAM',
      'Spam',
      'spam',
    ]);
  });

  it('does not depend on the order of the texts', () => {
    const options = { maxVocab: 5, minCount: 1, lowercase: true };
    assert.deepEqual(buildVocabulary([...texts].reverse(), options), buildVocabulary(texts, options));
  });

  it('rejects a maxVocab without room for the special tokens', () => {
    assert.throws(() => buildVocabulary(texts, { maxVocab: 1, minCount: 1, lowercase: true }), RangeError);
  });
});

describe('encodeText', () => {
  const config = { vocabulary: [PAD_TOKEN, UNKNOWN_TOKEN, 'free', 'money', 'now'], maxLength: 6, lowercase: true };

  it('maps tokens to ids, unknown tokens to <unk>, and pads at the end', () => {
    assert.deepEqual(
      encodeText('FREE money, call now!', config),
      Int32Array.from([2, 3, UNKNOWN_ID, 4, PAD_ID, PAD_ID]),
    );
  });

  it('keeps only the first maxLength tokens', () => {
    assert.deepEqual(
      encodeText('free free free money money money now', { ...config, maxLength: 4 }),
      Int32Array.from([2, 2, 2, 3]),
    );
  });

  it('encodes empty text as all padding', () => {
    assert.deepEqual(encodeText('', config), new Int32Array(6));
  });

  it('does not lowercase when the config says so', () => {
    assert.deepEqual(
      encodeText('FREE free', { ...config, lowercase: false, maxLength: 2 }),
      Int32Array.from([UNKNOWN_ID, 2]),
    );
  });

  it('is deterministic and agrees with a vocabulary built from the same texts', () => {
    const texts = ['Win a FREE prize now', 'meeting notes for now'];
    const vocabulary = buildVocabulary(texts, { maxVocab: 50, minCount: 1, lowercase: true });
    const encoded = encodeText(texts[0]!, { vocabulary, maxLength: 8, lowercase: true });
    assert.deepEqual(
      [...encoded].map((id) => vocabulary[id]),
      ['win', 'a', 'free', 'prize', 'now', PAD_TOKEN, PAD_TOKEN, PAD_TOKEN],
    );
    assert.deepEqual(encodeText(texts[0]!, { vocabulary, maxLength: 8, lowercase: true }), encoded);
  });

  it('rejects malformed configs', () => {
    assert.throws(() => encodeText('x', { ...config, maxLength: 0 }), /maxLength/);
    assert.throws(() => encodeText('x', { ...config, vocabulary: ['free', UNKNOWN_TOKEN] }), /must start with/);
    assert.throws(() => encodeText('x', { ...config, vocabulary: [PAD_TOKEN, UNKNOWN_TOKEN, 'a', 'a'] }), /duplicate/);
  });
});

describe('leadingTokens and encodeTokens (tokenising in a worker, ids on the main thread)', () => {
  const config = { vocabulary: [PAD_TOKEN, UNKNOWN_TOKEN, 'free', 'money', 'now'], maxLength: 4, lowercase: true };

  it('together give what encodeText gives', () => {
    for (const text of ['FREE money, call now!', '', 'now now now now now now', 'l\u2019été free']) {
      const leading = leadingTokens(text, config.lowercase, config.maxLength);
      assert.ok(leading.length <= config.maxLength);
      assert.deepEqual(encodeTokens(leading, config), encodeText(text, config));
    }
  });
});
