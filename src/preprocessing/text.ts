// Deterministic word tokenizer for text classifiers. Its whole configuration travels in the model's
// signature (`{kind: 'text', vocabulary, maxLength, lowercase}`), so whoever trains a model and the server
// that serves it turn the same text into the same token ids.
//
// Tokenisation: Unicode NFC normalisation, optional lowercasing (String#toLowerCase, which is
// locale-independent), then every maximal run of letters, combining marks and digits, with apostrophes
// allowed between such runs ("don't", "l'été"). U+2019 is read as an apostrophe. Everything else separates.
// Encoding: the first `maxLength` tokens, each mapped to its vocabulary index or to <unk>, then padded
// with <pad> at the end.

export const PAD_TOKEN = '<pad>';
export const UNKNOWN_TOKEN = '<unk>';
export const PAD_ID = 0;
export const UNKNOWN_ID = 1;

export interface TextTokenizerConfig {
  /** Token id = index. Index 0 is "<pad>", index 1 is "<unk>". */
  vocabulary: readonly string[];
  maxLength: number;
  lowercase: boolean;
}

/** The signature's preprocessing entry for text models. */
export interface TextPreprocessing extends TextTokenizerConfig {
  kind: 'text';
}

export interface VocabularyOptions {
  /** Size of the returned vocabulary, including "<pad>" and "<unk>". */
  maxVocab: number;
  /** Tokens seen fewer times than this are left out. */
  minCount: number;
  lowercase: boolean;
}

const WORD = /[\p{L}\p{M}\p{N}]+(?:'[\p{L}\p{M}\p{N}]+)*/gu;

function normalise(text: string, lowercase: boolean): string {
  const normalised = text.normalize('NFC').replaceAll('\u2019', "'");
  return lowercase ? normalised.toLowerCase() : normalised;
}

function* tokens(text: string, lowercase: boolean): Generator<string> {
  for (const match of normalise(text, lowercase).matchAll(WORD)) yield match[0];
}

/** All tokens of `text`, in order. */
export function tokenize(text: string, lowercase: boolean): string[] {
  return [...tokens(text, lowercase)];
}

/**
 * The most frequent tokens of `texts`, after "<pad>" and "<unk>". Ties are broken by code-unit order of
 * the token, so the result depends only on the texts and options.
 */
export function buildVocabulary(texts: Iterable<string>, options: VocabularyOptions): string[] {
  const { maxVocab, minCount, lowercase } = options;
  if (!Number.isInteger(maxVocab) || maxVocab < 2) throw new RangeError('maxVocab must be an integer ≥ 2');
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const token of tokens(text, lowercase)) counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  // The special tokens are not words, so the WORD pattern can never produce them.
  const ranked = [...counts]
    .filter(([, count]) => count >= minCount)
    .sort(([a, countA], [b, countB]) => countB - countA || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, maxVocab - 2)
    .map(([token]) => token);
  return [PAD_TOKEN, UNKNOWN_TOKEN, ...ranked];
}

// Token → id maps, built once per vocabulary array (configs are treated as immutable).
const tokenIds = new WeakMap<readonly string[], Map<string, number>>();

function tokenIdsOf(vocabulary: readonly string[]): Map<string, number> {
  let ids = tokenIds.get(vocabulary);
  if (ids) return ids;
  if (vocabulary[PAD_ID] !== PAD_TOKEN || vocabulary[UNKNOWN_ID] !== UNKNOWN_TOKEN) {
    throw new RangeError(`vocabulary must start with "${PAD_TOKEN}", "${UNKNOWN_TOKEN}"`);
  }
  ids = new Map(vocabulary.map((token, id) => [token, id]));
  if (ids.size !== vocabulary.length) throw new RangeError('vocabulary has duplicate tokens');
  tokenIds.set(vocabulary, ids);
  return ids;
}

/** The first `maxLength` tokens of `text`: all that encoding reads (the heavy part, run in a worker for large inputs). */
export function leadingTokens(text: string, lowercase: boolean, maxLength: number): string[] {
  const leading: string[] = [];
  for (const token of tokens(text, lowercase)) {
    if (leading.length === maxLength) break;
    leading.push(token);
  }
  return leading;
}

/** Token ids of `leading` (at most `maxLength` tokens): exactly `maxLength` ids, padded with <pad> (0) at the end. */
export function encodeTokens(leading: readonly string[], config: TextTokenizerConfig): Int32Array {
  const { vocabulary, maxLength } = config;
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError('maxLength must be a positive integer');
  const ids = tokenIdsOf(vocabulary);
  const encoded = new Int32Array(maxLength); // zero-filled = <pad>
  for (let position = 0; position < Math.min(leading.length, maxLength); position++) {
    encoded[position] = ids.get(leading[position]!) ?? UNKNOWN_ID;
  }
  return encoded;
}

/** Token ids of `text`: exactly `maxLength` of them, truncated or padded with <pad> (0) at the end. */
export function encodeText(text: string, config: TextTokenizerConfig): Int32Array {
  // encodeTokens checks the config (a maxLength below 1 yields no tokens, then is refused there).
  return encodeTokens(leadingTokens(text, config.lowercase, config.maxLength), config);
}
