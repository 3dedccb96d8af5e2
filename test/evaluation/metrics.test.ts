import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  accuracy,
  argmaxRows,
  classificationMetrics,
  confusionMatrix,
  macroF1,
  perClassMetrics,
} from '../../src/evaluation/metrics.js';

const close = (actual: number, expected: number) =>
  assert.ok(Math.abs(actual - expected) < 1e-12, `${actual} is not ${expected}`);

describe('classificationMetrics', () => {
  // Class 2 is never predicted. By hand:
  //   confusion rows (true) / columns (predicted): [2 1 0] [0 2 0] [0 1 0]
  //   class 0: P = 2/2, R = 2/3, F1 = 0.8
  //   class 1: P = 2/4, R = 2/2, F1 = 2/3
  //   class 2: P = 0 (no predictions), R = 0/1, F1 = 0
  //   accuracy = 4/6, macro-F1 = (0.8 + 2/3 + 0) / 3 = 22/45
  const yTrue = [0, 0, 0, 1, 1, 2];
  const yPred = [0, 0, 1, 1, 1, 1];
  const report = classificationMetrics(yTrue, yPred, 3, ['cat', 'dog', 'bird']);

  it('counts true classes by row and predictions by column', () => {
    assert.deepEqual(report.confusionMatrix, [
      [2, 1, 0],
      [0, 2, 0],
      [0, 1, 0],
    ]);
  });

  it('computes accuracy and per-class precision, recall, F1 and support', () => {
    close(report.accuracy, 4 / 6);
    const [cat, dog] = report.perClass;
    assert.deepEqual(
      report.perClass.map((c) => [c.label, c.support]),
      [
        ['cat', 3],
        ['dog', 2],
        ['bird', 1],
      ],
    );
    close(cat!.precision, 1);
    close(cat!.recall, 2 / 3);
    close(cat!.f1, 0.8);
    close(dog!.precision, 0.5);
    close(dog!.recall, 1);
    close(dog!.f1, 2 / 3);
  });

  it('gives a never-predicted class precision 0 and F1 0', () => {
    const bird = report.perClass[2]!;
    assert.equal(bird.precision, 0);
    assert.equal(bird.recall, 0);
    assert.equal(bird.f1, 0);
  });

  it('averages F1 over every class for macro-F1', () => {
    close(report.macroF1, 22 / 45);
  });

  it('reports labels and sample count and survives JSON', () => {
    assert.deepEqual(report.labels, ['cat', 'dog', 'bird']);
    assert.equal(report.samples, 6);
    assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
  });

  it('gives a class with no true samples recall 0 and counts it in macro-F1', () => {
    const metrics = classificationMetrics([0, 0, 1], [0, 2, 1], 3);
    assert.deepEqual(metrics.labels, ['0', '1', '2']);
    const absent = metrics.perClass[2]!;
    assert.deepEqual(absent, { label: '2', precision: 0, recall: 0, f1: 0, support: 0 });
    // class 0: P 1, R 1/2, F1 2/3; class 1: F1 1; class 2: F1 0
    close(metrics.macroF1, (2 / 3 + 1 + 0) / 3);
  });

  it('is 1 everywhere for perfect predictions', () => {
    const metrics = classificationMetrics([1, 0, 1], [1, 0, 1], 2);
    assert.equal(metrics.accuracy, 1);
    assert.equal(metrics.macroF1, 1);
    assert.ok(metrics.perClass.every((c) => c.precision === 1 && c.recall === 1 && c.f1 === 1));
  });
});

describe('metric building blocks', () => {
  it('accuracy counts matching pairs', () => {
    assert.equal(accuracy([1, 2, 3, 4], [1, 0, 3, 0]), 0.5);
  });

  it('perClassMetrics and macroF1 agree with the full report', () => {
    const matrix = confusionMatrix([0, 1, 1], [0, 1, 0], 2);
    assert.deepEqual(matrix, [
      [1, 0],
      [1, 1],
    ]);
    const perClass = perClassMetrics(matrix, ['a', 'b']);
    close(perClass[0]!.precision, 0.5);
    close(perClass[1]!.recall, 0.5);
    close(macroF1(perClass), classificationMetrics([0, 1, 1], [0, 1, 0], 2).macroF1);
  });

  it('rejects mismatched, empty or out-of-range input', () => {
    assert.throws(() => accuracy([0, 1], [0]), RangeError);
    assert.throws(() => accuracy([], []), RangeError);
    assert.throws(() => confusionMatrix([0, 3], [0, 1], 3), /yTrue\[1\] = 3/);
    assert.throws(() => confusionMatrix([0, 1], [0, 0.5], 2), /yPred\[1\] = 0.5/);
    assert.throws(() => confusionMatrix([0], [0], 0), RangeError);
    assert.throws(() => classificationMetrics([0], [0], 2, ['only one']), /1 labels for 2 classes/);
  });
});

describe('argmaxRows', () => {
  it('picks the highest score of each row, the first one on ties', () => {
    assert.deepEqual(argmaxRows(Float32Array.from([0.1, 0.7, 0.2, 0.5, 0.5, 0, -3, -2, -1]), 3), [1, 0, 2]);
  });

  it('returns no predictions for no rows and rejects ragged input', () => {
    assert.deepEqual(argmaxRows([], 2), []);
    assert.throws(() => argmaxRows([1, 2, 3], 2), /do not form rows/);
  });
});
