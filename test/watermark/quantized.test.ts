// Quantized layers-models (uint8/uint16/float16 weights, as `tensorflowjs_converter --quantize_*` writes them)
// carry owner marks and licensee fingerprints in their own scheme: marked, re-quantized, and decoded from the
// re-quantized weights.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as tf from '@tensorflow/tfjs';
import { quantizeArtifact } from '../../bench/watermark/attacks.js';
import { loadModel } from '../../bench/watermark/models.js';
import { seededRandom } from '../../demo/random.js';
import { findTensor, tensorEntries } from '../../src/watermark/artifact.js';
import {
  decide,
  decodeMarks,
  deriveMarkKey,
  MARK_BITS,
  markArtifact,
  selectMarkTensor,
  WatermarkError,
  type WeightsArtifact,
} from '../../src/watermark/index.js';
import { inputs, mlpArtifact, SECRET } from './support.js';

const owner = deriveMarkKey(SECRET, 'owner', 'quantized-version');
const licensee = deriveMarkKey(SECRET, 'licensee', 'quantized-contract');

async function outputsOf(artifact: WeightsArtifact, x: tf.Tensor): Promise<Float32Array> {
  const model = await loadModel(artifact);
  try {
    return (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
  } finally {
    model.dispose();
  }
}

/** Byte ranges of the artifact that differ from `original`'s, by tensor name. */
function changedTensors(artifact: WeightsArtifact, original: WeightsArtifact): string[] {
  return tensorEntries(original)
    .filter(({ byteOffset, byteLength }) => {
      const a = artifact.weights.subarray(byteOffset, byteOffset + byteLength);
      return !Buffer.from(a).equals(original.weights.subarray(byteOffset, byteOffset + byteLength));
    })
    .map((entry) => entry.spec.name);
}

describe('marks on quantized weights', () => {
  for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
    it(`marks ${dtype} weights in ${dtype}: same manifest and size, both marks decode from the stored bytes`, async () => {
      const original = quantizeArtifact(await mlpArtifact(21), dtype);
      const target = selectMarkTensor(original.modelJson).name;
      const published = markArtifact(original, owner);
      const licensed = markArtifact(published, licensee, { reference: original, preserve: [owner] });
      for (const copy of [published, licensed]) {
        assert.deepEqual(copy.modelJson, original.modelJson, 'dtypes, min and scale unchanged');
        assert.equal(copy.weights.byteLength, original.weights.byteLength);
        assert.deepEqual(changedTensors(copy, original), [target]);
        assert.equal(copy.report.bitErrorsAfter, 0);
      }
      assert.ok(published.report.relativeChange < 0.2, `relative change ${published.report.relativeChange}`);
      const verdicts = decide(decodeMarks(licensed, original, [owner, licensee]), 2);
      assert.deepEqual(
        verdicts.map((v) => [v.purpose, v.matchedBits, v.verdict]),
        [
          ['owner', MARK_BITS, 'MATCH'],
          ['licensee', MARK_BITS, 'MATCH'],
        ],
      );
      const ownerOnly = decide(decodeMarks(published, original, [owner, licensee]), 2);
      assert.deepEqual(
        ownerOnly.map((v) => v.verdict),
        ['MATCH', 'NO_MATCH'],
      );
      // Rebuilding a copy gives the same bytes (the rounding is derived from the key).
      assert.deepEqual(markArtifact(original, owner).weights, published.weights);
      // tfjs dequantizes the copy on load; it computes what the original does, within the mark's change.
      const x = inputs(16);
      const before = await outputsOf(original, x);
      const after = await outputsOf(licensed, x);
      after.forEach((value, i) => assert.ok(Math.abs(value - before[i]!) < 0.05, `${dtype}: output ${i}`));
      x.dispose();
    });
  }

  it('refuses a tensor whose uint8 step is too coarse for the mark to survive re-quantization', async () => {
    // Ternary weights (−step, 0, +step; 90% zero) stored as uint8: the step is 3.2 standard deviations.
    const quantized = quantizeArtifact(await mlpArtifact(22), 'uint8');
    const entry = findTensor(tensorEntries(quantized), selectMarkTensor(quantized.modelJson).name);
    const { scale, min } = entry.spec.quantization as { scale: number; min: number };
    const zero = Math.round(-min / scale);
    const random = seededRandom(5);
    const weights = new Uint8Array(quantized.weights);
    for (let i = 0; i < entry.size; i++) {
      const u = random();
      weights[entry.byteOffset + i] = zero + (u < 0.05 ? -1 : u > 0.95 ? 1 : 0);
    }
    const ternary = { modelJson: quantized.modelJson, weights };
    assert.throws(
      () => markArtifact(ternary, owner),
      (error: unknown) =>
        error instanceof WatermarkError &&
        /uint8-quantized with a step of 3\.\d+σ: too coarse for a mark/.test(error.message),
    );
  });
});
