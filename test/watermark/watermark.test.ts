import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { permuteAndScaleUnits, quantizeArtifact, pruneArtifact } from '../../bench/watermark/attacks.js';
import { saveArtifact } from '../../bench/watermark/models.js';
import { seededRandom } from '../../demo/random.js';
import { buildCnn, buildTextClassifier } from '../../demo/models.js';
import { alignUnits, minimumCostAssignment } from '../../src/watermark/alignment.js';
import {
  decide,
  decodeMark,
  decodeMarks,
  deriveMarkKey,
  inputStatistics,
  MARK_BITS,
  markArtifact,
  selectMarkTensor,
  SHAPED_MARGIN,
  WatermarkError,
  type WeightsArtifact,
} from '../../src/watermark/index.js';
import { HIDDEN, hiddenUnits, INPUTS, inputs, mlpArtifact, outputsOf, SECRET, subspaceHead } from './support.js';

const owner = deriveMarkKey(SECRET, 'owner', 'version-1');
const licensee = deriveMarkKey(SECRET, 'licensee', 'contract-1');

async function savedArtifactOf(model: tf.LayersModel): Promise<WeightsArtifact> {
  try {
    return await saveArtifact(model);
  } finally {
    model.dispose();
  }
}

describe('selectMarkTensor', () => {
  it('picks the first Dense kernel of an MLP, its hidden units as the unit axis', async () => {
    const target = selectMarkTensor((await mlpArtifact(1)).modelJson);
    assert.match(target.name, /\/kernel$/);
    assert.deepEqual(target.shape, [INPUTS, HIDDEN]);
    assert.deepEqual(target.unitAxis, { outer: INPUTS, units: HIDDEN, inner: 1 });
  });

  it("picks a CNN's Dense head, whose rows are the last convolution's channels", async () => {
    const target = selectMarkTensor((await savedArtifactOf(buildCnn([28, 28, 1], 10))).modelJson);
    assert.deepEqual(target.shape, [800, 10]);
    assert.deepEqual(target.unitAxis, { outer: 25, units: 32, inner: 10 });
    assert.match(target.denseLayer ?? '', /^dense/);
  });

  it("picks a text classifier's embedding matrix", async () => {
    const target = selectMarkTensor((await savedArtifactOf(buildTextClassifier(500, 20, 2))).modelJson);
    assert.match(target.name, /\/embeddings$/);
    assert.deepEqual(target.unitAxis, { outer: 500, units: 128, inner: 1 });
    assert.equal(target.denseLayer, null);
  });

  it('refuses models too small to carry a mark', async () => {
    const tiny = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [10], units: 8 }), tf.layers.dense({ units: 2 })],
    });
    const artifact = await savedArtifactOf(tiny);
    assert.throws(() => selectMarkTensor(artifact.modelJson), WatermarkError);
  });
});

describe('mark and decode', () => {
  it('round-trips an owner mark through a saved tfjs model', async () => {
    const original = await mlpArtifact(1);
    const marked = markArtifact(original, owner, { margin: 1 });
    assert.equal(marked.report.bitErrorsAfter, 0);
    // Least-norm change: about margin · sqrt(256 / weights) of the tensor.
    const expected = Math.sqrt(MARK_BITS / (INPUTS * HIDDEN));
    assert.ok(
      Math.abs(marked.report.relativeChange / expected - 1) < 0.1,
      `relative change ${marked.report.relativeChange}`,
    );
    assert.deepEqual(marked.modelJson, original.modelJson);
    assert.notDeepEqual(marked.weights, original.weights);

    const result = decodeMark(marked, original, owner);
    assert.equal(result.matchedBits, MARK_BITS);
    assert.ok(Math.abs(result.pValue / 2 ** -256 - 1) < 1e-12);
    assert.equal(decide([result], 1)[0]!.verdict, 'MATCH');
    // tfjs loads the marked weights as an ordinary model.
    const x = inputs(8);
    assert.equal((await outputsOf(marked, x)).length, 8 * 10);
    x.dispose();
  });

  it('carries a licensee fingerprint on top of the owner mark; both decode', async () => {
    const original = await mlpArtifact(2);
    const published = markArtifact(original, owner);
    const licensed = markArtifact(published, licensee, { reference: original, preserve: [owner] });
    const results = decide(decodeMarks(licensed, original, [owner, licensee]), 2);
    assert.deepEqual(
      results.map((r) => [r.purpose, r.matchedBits, r.verdict]),
      [
        ['owner', MARK_BITS, 'MATCH'],
        ['licensee', MARK_BITS, 'MATCH'],
      ],
    );
  });

  it('leaves a Node Buffer artifact untouched, at any byte offset', async () => {
    const original = await mlpArtifact(3);
    const pooled = Buffer.concat([Buffer.alloc(3), Buffer.from(original.weights)]);
    const unaligned = { modelJson: original.modelJson, weights: pooled.subarray(3) };
    const marked = markArtifact(unaligned, owner);
    assert.deepEqual(new Uint8Array(unaligned.weights), original.weights);
    assert.equal(decodeMark(marked, unaligned, owner).matchedBits, MARK_BITS);
  });
});

describe('shaped marks', () => {
  const largestChange = (a: Float32Array, b: Float32Array) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));

  it('reaches every target while leaving outputs on the calibration subspace all but unchanged', async () => {
    const { model, sample } = subspaceHead();
    const original = await savedArtifactOf(model);
    const statistics = inputStatistics(sample(200).flat(), 200);
    const plain = markArtifact(original, owner);
    const shaped = markArtifact(original, owner, { shaping: statistics });
    assert.equal(shaped.report.shapedWith, 200);
    assert.equal(shaped.report.margin, SHAPED_MARGIN);
    assert.equal(decodeMark(shaped, original, owner).matchedBits, MARK_BITS);

    // Unseen inputs from the same subspace: the plain mark moves the outputs, the shaped one (with the bias
    // taking back the mean's share) by a ridge-sized remainder.
    const probe = tf.tensor2d(sample(50));
    const before = await outputsOf(original, probe);
    const plainChange = largestChange(await outputsOf(plain, probe), before);
    const shapedChange = largestChange(await outputsOf(shaped, probe), before);
    assert.ok(plainChange > 0.05, `plain mark moves probabilities by ${plainChange}`);
    assert.ok(shapedChange < plainChange / 20, `shaped ${shapedChange} vs plain ${plainChange}`);

    // A licensee fingerprint on top, shaped the same way: both marks decode, outputs still hold.
    const copy = markArtifact(shaped, licensee, { reference: original, preserve: [owner], shaping: statistics });
    const decoded = decodeMarks(copy, original, [owner, licensee]).map((r) => r.matchedBits);
    assert.deepEqual(decoded, [MARK_BITS, MARK_BITS]);
    assert.ok(largestChange(await outputsOf(copy, probe), before) < plainChange / 10);
    probe.dispose();
  });

  it('applies only to a Dense kernel with as many inputs as the calibration', async () => {
    const { model, sample } = subspaceHead();
    const wrongWidth = inputStatistics(
      sample(20)
        .map((row) => row.slice(0, 100))
        .flat(),
      20,
    );
    const dense = await savedArtifactOf(model);
    assert.throws(() => markArtifact(dense, owner, { shaping: wrongWidth }), WatermarkError);
    const embedding = await savedArtifactOf(buildTextClassifier(500, 20, 2));
    const statistics = inputStatistics(sample(20).flat(), 20);
    assert.throws(() => markArtifact(embedding, owner, { shaping: statistics }), /only a Dense kernel/);
  });
});

describe('alignment', () => {
  it('finds the optimal assignment', () => {
    const cost = Float64Array.from([4, 1, 3, 2, 0, 5, 3, 2, 2]);
    assert.deepEqual([...minimumCostAssignment(cost, 3)], [1, 0, 2]);
  });

  it('undoes a permutation and positive rescaling of units', () => {
    const random = seededRandom(5);
    const axis = { outer: 40, units: 12, inner: 3 };
    const original = Float32Array.from({ length: 40 * 12 * 3 }, () => random() - 0.5);
    const permutation = [3, 0, 11, 5, 1, 7, 2, 10, 4, 8, 6, 9];
    const suspect = new Float32Array(original.length);
    for (let o = 0; o < axis.outer; o++) {
      for (let u = 0; u < axis.units; u++) {
        for (let i = 0; i < axis.inner; i++) {
          suspect[(o * 12 + permutation[u]!) * 3 + i] = original[(o * 12 + u) * 3 + i]! * (0.5 + u / 8);
        }
      }
    }
    const { aligned, report } = alignUnits(suspect, original, axis);
    assert.equal(report.unitsMoved, 12);
    assert.ok(Math.abs(report.minScale - 0.5) < 1e-6 && Math.abs(report.maxScale - 1.875) < 1e-6);
    aligned.forEach((value, i) => assert.ok(Math.abs(value - original[i]!) < 1e-6));
  });

  it('decodes a marked model whose hidden units were permuted and rescaled', async () => {
    const original = await mlpArtifact(6);
    const marked = markArtifact(original, owner);
    const permuted = permuteAndScaleUnits(marked, hiddenUnits(marked), seededRandom(7));
    // The attack keeps the model's function...
    const x = inputs(16);
    const [before, after] = [await outputsOf(marked, x), await outputsOf(permuted, x)];
    before.forEach((value, i) => assert.ok(Math.abs(value - after[i]!) < 1e-5));
    x.dispose();
    // ...and breaks decoding without alignment only.
    const result = decodeMark(permuted, original, owner);
    assert.ok(result.alignment!.unitsMoved > HIDDEN / 2);
    assert.equal(result.matchedBits, MARK_BITS);
  });
});

describe('suspects', () => {
  it('decodes uint8- and float16-quantized copies, which tfjs loads', async () => {
    const original = await mlpArtifact(8);
    const marked = markArtifact(original, owner);
    const x = inputs(4);
    const reference = await outputsOf(marked, x);
    for (const dtype of ['uint8', 'float16'] as const) {
      const quantized = quantizeArtifact(marked, dtype);
      const outputs = await outputsOf(quantized, x);
      outputs.forEach((value, i) => assert.ok(Math.abs(value - reference[i]!) < 0.02, `${dtype}: output ${i}`));
      const result = decide([decodeMark(quantized, original, owner)], 1)[0]!;
      assert.equal(result.verdict, 'MATCH', `${dtype}: ${result.matchedBits} bits`);
      assert.equal(result.matchedBits, MARK_BITS);
    }
    x.dispose();
  });

  it('leaves pruned weights out of decoding', async () => {
    const original = await mlpArtifact(9);
    const result = decodeMark(pruneArtifact(markArtifact(original, owner), 0.5), original, owner);
    assert.ok(Math.abs(result.erasedWeights / (INPUTS * HIDDEN) - 0.5) < 0.01);
    assert.equal(result.matchedBits, MARK_BITS);
  });

  it('finds no mark for wrong keys, unmarked models or the original itself', async () => {
    const original = await mlpArtifact(10);
    const marked = markArtifact(original, owner);
    const wrongKeys = Array.from({ length: 50 }, (_, i) => deriveMarkKey(SECRET, 'licensee', `wrong-${i}`));
    const wrong = decide(decodeMarks(marked, original, wrongKeys), wrongKeys.length);
    assert.ok(wrong.every((v) => v.verdict === 'NO_MATCH'));
    const meanMatched = wrong.reduce((sum, v) => sum + v.matchedBits, 0) / wrong.length;
    assert.ok(Math.abs(meanMatched - MARK_BITS / 2) < 8, `mean ${meanMatched} matched bits`);

    const unrelated = decodeMark(await mlpArtifact(11), original, owner);
    assert.equal(decide([unrelated], 1)[0]!.verdict, 'NO_MATCH');
    assert.equal(decodeMark(original, original, owner).matchedBits, 0);
  });

  it('refuses a suspect without the marked tensor', async () => {
    const original = await mlpArtifact(12);
    const other = await savedArtifactOf(buildTextClassifier(500, 20, 2));
    assert.throws(() => decodeMark(other, original, owner), WatermarkError);
  });
});
