// The data set reader and the comparison's disagreement, as pure functions.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classIndexOf,
  datasetChunks,
  type DatasetFormatError,
  scanDataset,
  type DatasetRow,
} from '../../src/evaluation/dataset-format.js';
import { disagreement } from '../../src/evaluation/evaluations-service.js';

const LIMITS = { maxRows: 1000, maxLineBytes: 1024 };

async function rowsOf(text: string, format: 'JSONL' | 'CSV', chunkSize = 2): Promise<DatasetRow[][]> {
  const chunks: DatasetRow[][] = [];
  for await (const chunk of datasetChunks(Buffer.from(text), format, LIMITS, chunkSize)) chunks.push(chunk);
  return chunks;
}

describe('data set reader', () => {
  it('reads JSONL in chunks, numbering lines as an editor does (blank lines, CRLF and a byte-order mark)', async () => {
    const text =
      '\ufeff{"input": [1], "label": "a"}\r\n\r\n{"input": "text", "label": 2}\n{"label": 0, "input": {"x": 1}}';
    assert.deepEqual(await rowsOf(text, 'JSONL'), [
      [
        { line: 1, input: [1], label: 'a', end: 33 },
        { line: 3, input: 'text', label: 2, end: 65 },
      ],
      [{ line: 4, input: { x: 1 }, label: 0, end: 97 }],
    ]);
  });

  it('reads JSONL inputs without labels, and from where an earlier read stopped', async () => {
    const bytes = Buffer.from('{"input": [1]}\n\n{"input": [2], "label": 1}\n{"input": [3]}\n');
    const [first] = await rowsOf(bytes.toString(), 'JSONL', 1);
    assert.deepEqual(first, [{ line: 1, input: [1], end: 15 }]);
    const rest: DatasetRow[][] = [];
    for await (const chunk of datasetChunks(bytes, 'JSONL', LIMITS, 5, [], { offset: 15, line: 1 })) rest.push(chunk);
    assert.deepEqual(rest, [
      [
        { line: 3, input: [2], label: 1, end: 43 },
        { line: 4, input: [3], end: 58 },
      ],
    ]);
  });

  it('reads CSV with the label column anywhere and quoted fields', async () => {
    const columns: string[] = [];
    const chunks: DatasetRow[][] = [];
    const text = 'x,"label","y ""2"""\n1.5,"yes, sir",-2\n3,no,4e2\n';
    for await (const chunk of datasetChunks(Buffer.from(text), 'CSV', LIMITS, 10, columns)) chunks.push(chunk);
    assert.deepEqual(columns, ['x', 'y "2"']);
    assert.deepEqual(chunks, [
      [
        { line: 2, input: { x: 1.5, 'y "2"': -2 }, label: 'yes, sir', end: 38 },
        { line: 3, input: { x: 3, 'y "2"': 400 }, label: 'no', end: 47 },
      ],
    ]);
  });

  it('counts rows and stops at the limits', async () => {
    assert.deepEqual(await scanDataset(Buffer.from('a,label\n1,x\n2,y'), 'CSV', LIMITS), { rows: 2, columns: ['a'] });
    const many = Array.from({ length: 3 }, () => '{"input": 1, "label": 0}').join('\n');
    await assert.rejects(
      scanDataset(Buffer.from(many), 'JSONL', { ...LIMITS, maxRows: 2 }),
      (error: DatasetFormatError) => error.line === null && /more than 2 examples/.test(error.message),
    );
  });

  it('reads a label as a class label first, else as a class index', () => {
    const labels = ['cat', 'dog', '7'];
    assert.equal(classIndexOf('dog', labels), 1);
    assert.equal(classIndexOf('7', labels), 2);
    assert.equal(classIndexOf('1', labels), 1);
    assert.equal(classIndexOf(0, labels), 0);
    assert.equal(classIndexOf(3, labels), null);
    assert.equal(classIndexOf('bird', labels), null);
  });
});

describe('disagreement of two versions', () => {
  it('counts differing answers, and which side was right, with their first indices', () => {
    const truth = [0, 1, 2, 0, 1, 2];
    const a = [0, 1, 1, 2, 1, 2];
    const b = [0, 2, 2, 1, 1, 2];
    assert.deepEqual(disagreement(truth, a, b), {
      examples: 6,
      differing: 3,
      aRightBWrong: 1,
      bRightAWrong: 1,
      differingIndices: [1, 2, 3],
      aRightBWrongIndices: [1],
      bRightAWrongIndices: [2],
    });
  });
});
