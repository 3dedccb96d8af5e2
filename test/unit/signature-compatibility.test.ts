// What an upgrade offer tells a consumer about the new version's signature (upgrade.available's comparison):
// the same inputs and outputs are compatible; anything a client written for the old one would notice is breaking.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareSignatures, parseSignature } from '../../src/models/signature.js';

const named = (inputs: object[], outputs: object[]) => parseSignature({ inputs, outputs });
const a = { name: 'a', shape: [4], dtype: 'float32' };
const b = { name: 'b', shape: [2, 2], dtype: 'int32' };
const scores = { name: 'scores', kind: 'classification', labels: ['no', 'yes'] };

describe('compareSignatures', () => {
  it('finds two signatures with the same inputs and outputs compatible, whatever their order', () => {
    const result = compareSignatures(named([a, b], [scores]), named([b, a], [scores]));
    assert.deepEqual(result, {
      breaking: false,
      reasons: [],
      inputsChanged: false,
      labelsChanged: false,
      outputsChanged: false,
    });
  });

  it('names each input and output difference', () => {
    const result = compareSignatures(
      named([a, b], [scores]),
      named(
        [
          { ...a, dtype: 'int32' },
          { name: 'c', shape: [1], dtype: 'float32' },
        ],
        [
          { ...scores, labels: ['yes', 'no'] },
          { name: 'extra', kind: 'values', size: 3 },
        ],
      ),
    );
    assert.deepEqual(result, {
      breaking: true,
      reasons: [
        'input "a" changed dtype from float32 to int32',
        'input "b" was removed',
        'input "c" was added',
        'output "scores" changed its labels',
        'output "extra" was added',
      ],
      inputsChanged: true,
      labelsChanged: true,
      outputsChanged: true,
    });
  });

  it('counts a changed shape or preprocessing as an input change', () => {
    const single = (shape: number[], preprocessing: object) =>
      parseSignature({
        input: { shape, dtype: 'float32', preprocessing },
        output: { kind: 'values', size: 1 },
      });
    const tabular = (names: string[]) => ({ kind: 'tabular', features: names.map((name) => ({ name })) });
    assert.deepEqual(
      compareSignatures(single([2], tabular(['x', 'y'])), single([3], tabular(['x', 'y', 'z']))).reasons,
      ['input "input" changed shape from [2] to [3]'],
    );
    assert.deepEqual(compareSignatures(single([2], tabular(['x', 'y'])), single([2], tabular(['y', 'x']))).reasons, [
      'input "input" changed its preprocessing',
    ]);
  });
});
