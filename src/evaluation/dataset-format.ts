// Data sets as uploaded: JSONL, one `{"input": …, "label": …}` object a line (the input exactly as predict takes one
// instance; the label may be left out of a data set of inputs only, which batch predictions run), or CSV for tabular models (a header row of feature names and a `label` column). Read line by
// line straight from the bytes, yielding to the event loop every SLICE_BYTES (128 KiB), so that a 50 MB upload never holds the
// loop for more than a few milliseconds (one line is at most DATASET_MAX_LINE_BYTES). Lines are numbered from 1,
// as an editor numbers them, in every error.
import { setImmediate as nextTurn } from 'node:timers/promises';

export type DatasetFormat = 'JSONL' | 'CSV';

/** One example: its line in the file, its input, and its label (a class label, or a class index) when it has one. */
export interface DatasetRow {
  line: number;
  input: unknown;
  label?: string | number;
  /** The byte offset just past the example's line: where reading the next example starts. */
  end: number;
}

/** Where reading starts: a byte offset at the start of a line, and the number of the line before it. */
export interface DatasetPosition {
  offset: number;
  line: number;
}

export interface DatasetLimits {
  maxRows: number;
  maxLineBytes: number;
}

/** A line that is not a labelled example, or a file over its limits; `line` is where, when it is one line's fault. */
export class DatasetFormatError extends Error {
  constructor(
    message: string,
    readonly line: number | null = null,
  ) {
    super(line === null ? message : `line ${line}: ${message}`);
  }
}

/** Bytes parsed between two yields to the event loop. */
const SLICE_BYTES = 128 * 1024;
const MAX_LABEL_LENGTH = 200;
const MAX_CLASS_INDEX = 100_000;
const MAX_COLUMNS = 10_000;
const NEWLINE = 0x0a;

function checkedLabel(label: unknown, line: number): string | number {
  if (typeof label === 'string') {
    if (label.length === 0 || label.length > MAX_LABEL_LENGTH) {
      throw new DatasetFormatError(`label must be 1 to ${MAX_LABEL_LENGTH} characters`, line);
    }
    return label;
  }
  if (typeof label === 'number' && Number.isInteger(label) && label >= 0 && label < MAX_CLASS_INDEX) return label;
  throw new DatasetFormatError('label must be a class label (a string) or a class index (an integer from 0)', line);
}

function jsonlRow(text: string, line: number, end: number): DatasetRow {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DatasetFormatError('not a JSON object', line);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DatasetFormatError('expected an object {"input": …, "label": …}', line);
  }
  const object = value as Record<string, unknown>;
  const unknown = Object.keys(object).find((key) => key !== 'input' && key !== 'label');
  if (unknown !== undefined) throw new DatasetFormatError(`unknown key "${unknown.slice(0, 64)}"`, line);
  if (object.input === undefined || object.input === null) throw new DatasetFormatError('missing "input"', line);
  if (object.label === undefined) return { line, input: object.input, end };
  return { line, input: object.input, label: checkedLabel(object.label, line), end };
}

/** The fields of one CSV line (RFC 4180 quoting; a quoted field may not span lines). */
function csvFields(text: string, line: number): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        const quote = text.indexOf('"', i);
        if (quote === -1) throw new DatasetFormatError('unterminated quoted field', line);
        field += text.slice(i, quote);
        if (text[quote + 1] === '"') {
          field += '"';
          i = quote + 2;
        } else {
          i = quote + 1;
          break;
        }
      }
      if (i < text.length && text[i] !== ',') throw new DatasetFormatError('text after a quoted field', line);
    } else {
      const comma = text.indexOf(',', i);
      field = text.slice(i, comma === -1 ? text.length : comma);
      i = comma === -1 ? text.length : comma;
    }
    fields.push(field);
    if (fields.length > MAX_COLUMNS + 1) throw new DatasetFormatError(`more than ${MAX_COLUMNS} columns`, line);
    if (i >= text.length) return fields;
    i++; // the comma
  }
}

interface CsvHeader {
  features: string[];
  labelColumn: number;
}

function csvHeader(text: string, line: number): CsvHeader {
  const names = csvFields(text, line).map((name) => name.trim());
  const labelColumn = names.indexOf('label');
  if (labelColumn === -1) throw new DatasetFormatError('the header row has no "label" column', line);
  if (names.some((name) => name.length === 0)) throw new DatasetFormatError('a column has no name', line);
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined) throw new DatasetFormatError(`column "${duplicate.slice(0, 64)}" appears twice`, line);
  if (names.length < 2) throw new DatasetFormatError('the header names no feature column', line);
  return { features: names.filter((_, i) => i !== labelColumn), labelColumn };
}

function csvRow(text: string, line: number, header: CsvHeader, end: number): DatasetRow {
  const fields = csvFields(text, line);
  const columns = header.features.length + 1;
  if (fields.length !== columns)
    throw new DatasetFormatError(`${fields.length} fields; the header has ${columns}`, line);
  const input: Record<string, number> = {};
  let feature = 0;
  fields.forEach((field, i) => {
    if (i === header.labelColumn) return;
    const name = header.features[feature++]!;
    const trimmed = field.trim();
    const value = Number(trimmed);
    if (trimmed === '' || !Number.isFinite(value)) {
      throw new DatasetFormatError(`${name.slice(0, 64)}: "${trimmed.slice(0, 32)}" is not a number`, line);
    }
    input[name] = value;
  });
  return { line, input, label: checkedLabel(fields[header.labelColumn]!.trim(), line), end };
}

/**
 * The data set's examples, `chunkSize` at a time (the last chunk may be shorter), checked for their form (not yet
 * against any model). `columns` receives the CSV header's feature names when the header is read. A JSONL data set
 * may be read `from` where an earlier read stopped (a row's `end`, and its line); `maxRows` then counts from there.
 */
export async function* datasetChunks(
  bytes: Buffer,
  format: DatasetFormat,
  limits: DatasetLimits,
  chunkSize: number,
  columns: string[] = [],
  from: DatasetPosition = { offset: 0, line: 0 },
): AsyncGenerator<DatasetRow[]> {
  let header: CsvHeader | null = null;
  let chunk: DatasetRow[] = [];
  let rows = 0;
  let sinceYield = 0;
  let line = from.line;
  // A UTF-8 byte-order mark is dropped, as editors write one.
  let start = from.offset > 0 ? from.offset : bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  while (start < bytes.length) {
    line++;
    const newline = bytes.indexOf(NEWLINE, start);
    const end = newline === -1 ? bytes.length : newline;
    if (end - start > limits.maxLineBytes) {
      throw new DatasetFormatError(`longer than ${limits.maxLineBytes} bytes`, line);
    }
    const text = bytes.toString('utf8', start, end > start && bytes[end - 1] === 0x0d ? end - 1 : end);
    sinceYield += end - start + 1;
    start = end + 1;
    if (text.trim() === '') continue;
    if (format === 'CSV' && header === null) {
      header = csvHeader(text, line);
      columns.push(...header.features);
      continue;
    }
    if (++rows > limits.maxRows) throw new DatasetFormatError(`more than ${limits.maxRows} examples`);
    chunk.push(format === 'CSV' ? csvRow(text, line, header!, start) : jsonlRow(text, line, start));
    if (chunk.length === chunkSize) {
      yield chunk;
      chunk = [];
    }
    if (sinceYield >= SLICE_BYTES) {
      sinceYield = 0;
      await nextTurn();
    }
  }
  if (chunk.length) yield chunk;
  if (rows === 0) throw new DatasetFormatError(format === 'CSV' ? 'no example under the header row' : 'no example');
}

/** Checks a whole data set's form; its number of examples and (CSV) feature columns. */
export async function scanDataset(
  bytes: Buffer,
  format: DatasetFormat,
  limits: DatasetLimits,
): Promise<{ rows: number; columns: string[] }> {
  const columns: string[] = [];
  let rows = 0;
  for await (const chunk of datasetChunks(bytes, format, limits, 1024, columns)) rows += chunk.length;
  return { rows, columns };
}

/** The class index a label names in `labels`: the label itself, else (a number, or a CSV label of digits) an index. */
export function classIndexOf(label: string | number, labels: readonly string[]): number | null {
  if (typeof label === 'string') {
    const index = labels.indexOf(label);
    if (index !== -1) return index;
    if (!/^\d{1,6}$/.test(label)) return null;
    label = Number(label);
  }
  return label < labels.length ? label : null;
}
