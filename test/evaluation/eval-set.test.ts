import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeEvalSet, encodeEvalSet, EVAL_SET_FORMAT, type EvalSetSource } from '../../src/evaluation/eval-set.js';

const imageBytes = [0, 0, 0, 51, 255, 255, 255, 255, 0, 255, 0, 255];
const tokenIds = [2, 9999, 0, 1, 65535, 0];

const images: EvalSetSource = {
  dataset: 'three 2×2 grey images',
  labels: ['dark', 'light'],
  shape: [2, 2, 1],
  dtype: 'float32',
  values: imageBytes,
  storedAs: 'uint8',
  divideBy: 255,
  targets: [0, 1, 1],
  baseline: { accuracy: 2 / 3, macroF1: 0.5 },
  examples: [{ index: 2, input: 'iVBORw0KGgo=' }],
};

const tokens: EvalSetSource = {
  dataset: 'two token sequences',
  labels: ['ham', 'spam'],
  shape: [3],
  dtype: 'int32',
  values: tokenIds,
  storedAs: 'uint16',
  divideBy: 1,
  targets: [1, 0],
  examples: [],
};

/** A JSON round trip, as through eval.json on disk. */
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

describe('eval sets', () => {
  it('round-trips image bytes into [0, 1] float inputs', () => {
    const file = encodeEvalSet(images);
    assert.equal(file.format, EVAL_SET_FORMAT);
    assert.equal(file.count, 3);
    assert.equal(Buffer.from(file.data.base64, 'base64').length, 12);
    const set = decodeEvalSet(viaJson(file));
    assert.ok(set.inputs instanceof Float32Array);
    assert.deepEqual(
      set.inputs,
      Float32Array.from(imageBytes, (v) => v / 255),
    );
    assert.deepEqual(
      { shape: set.shape, exampleSize: set.exampleSize, targets: set.targets, labels: set.labels },
      { shape: [2, 2, 1], exampleSize: 4, targets: [0, 1, 1], labels: ['dark', 'light'] },
    );
    assert.deepEqual(set.baseline, images.baseline);
    assert.deepEqual(set.examples, images.examples);
  });

  it('round-trips token ids as int32 inputs, packed little-endian', () => {
    const file = encodeEvalSet(tokens);
    // 9999 = 0x270f → bytes 0f 27
    assert.deepEqual([...Buffer.from(file.data.base64, 'base64').subarray(2, 4)], [0x0f, 0x27]);
    const set = decodeEvalSet(viaJson(file));
    assert.ok(set.inputs instanceof Int32Array);
    assert.deepEqual(set.inputs, Int32Array.from(tokenIds));
    assert.equal(set.baseline, undefined);
  });

  it('stores float32 and int32 values', () => {
    const floats = decodeEvalSet(
      encodeEvalSet({ ...images, values: imageBytes.map((v) => v / 7), storedAs: 'float32', divideBy: 1 }),
    );
    assert.deepEqual(
      floats.inputs,
      Float32Array.from(imageBytes, (v) => v / 7),
    );
    const ints = decodeEvalSet(encodeEvalSet({ ...tokens, values: [-5, 70000, 0, 1, 2, 3], storedAs: 'int32' }));
    assert.deepEqual(ints.inputs, Int32Array.from([-5, 70000, 0, 1, 2, 3]));
  });

  it('refuses values that the storage type cannot hold', () => {
    assert.throws(() => encodeEvalSet({ ...images, values: [...imageBytes.slice(0, 11), 256] }), /does not fit uint8/);
    assert.throws(() => encodeEvalSet({ ...tokens, values: [0.5, 0, 0, 0, 0, 0] }), /does not fit uint16/);
    assert.throws(() => encodeEvalSet({ ...tokens, divideBy: 2 }), /divideBy 1/);
  });

  it('refuses ragged data and targets that do not match', () => {
    assert.throws(() => encodeEvalSet({ ...images, values: imageBytes.slice(0, 10) }), /do not form examples/);
    assert.throws(() => encodeEvalSet({ ...images, targets: [0, 1] }), /2 targets for 3 examples/);
    assert.throws(() => encodeEvalSet({ ...images, targets: [0, 1, 2] }), /not a label index/);
    assert.throws(() => encodeEvalSet({ ...images, examples: [{ index: 3, input: 'x' }] }), /example index/);
  });

  it('rejects damaged files', () => {
    const file = encodeEvalSet(images);
    assert.throws(() => decodeEvalSet({ ...file, format: 'something-else' }), /invalid eval set: format/);
    assert.throws(() => decodeEvalSet({ ...file, count: 4, targets: [0, 1, 1, 0] }), /data has 12 bytes, expected 16/);
    assert.throws(() => decodeEvalSet({ ...file, extra: true }), /invalid eval set/);
    assert.throws(() => decodeEvalSet({ ...file, targets: [0, 1] }), /2 targets for 3 examples/);
  });
});
