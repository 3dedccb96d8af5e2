// What `predict --input` and `push --eval`/`--signature` read from files: JSON instances, or images sent as base64.
import { open } from 'node:fs/promises';
import { UsageError } from './output.js';

/** Far above what the server accepts in one call (BODY_LIMIT_BYTES, 8 MB by default), but bounded. */
export const MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024;

async function readBounded(file: string): Promise<Buffer> {
  const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  try {
    const { size } = await handle.stat();
    if (size > MAX_INPUT_FILE_BYTES) throw new UsageError(`${file} is over ${MAX_INPUT_FILE_BYTES} bytes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** PNG, JPEG or WebP, by their signatures. */
export function isImage(bytes: Buffer): boolean {
  const png = bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const jpeg = bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  const webp = bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP';
  return png || jpeg || webp;
}

/**
 * The instances in one file: an image is one instance (base64); JSON is `{"inputs": [...]}`, a list of instances
 * (a list whose items are lists, objects or strings), or else one instance (e.g. a flat list of numbers).
 */
export async function readInstances(file: string): Promise<unknown[]> {
  const bytes = await readBounded(file);
  if (isImage(bytes)) return [bytes.toString('base64')];
  const value = parseJson(bytes, file);
  if (isRecord(value) && Array.isArray(value.inputs)) return value.inputs;
  if (Array.isArray(value) && value.length > 0 && value.every((item) => typeof item !== 'number')) return value;
  return [value];
}

/** `push --eval`: `{"inputs": [...], "labels": [class indices]}`. */
export async function readEvaluation(file: string): Promise<{ inputs: unknown[]; labels?: number[] }> {
  const value = parseJson(await readBounded(file), file);
  if (!isRecord(value) || !Array.isArray(value.inputs)) {
    throw new UsageError(`${file} must hold {"inputs": [...], "labels": [class indices]}`);
  }
  const { labels } = value;
  if (labels !== undefined && !(Array.isArray(labels) && labels.every((l) => Number.isInteger(l)))) {
    throw new UsageError(`${file}: labels must be a list of class indices`);
  }
  return { inputs: value.inputs, ...(labels === undefined ? {} : { labels: labels as number[] }) };
}

/**
 * `push --signature`: the signature as JSON, or a model card holding one under `signature` (what `demo:train`
 * writes beside a model).
 */
export async function readSignature(file: string): Promise<Record<string, unknown>> {
  const value = parseJson(await readBounded(file), file);
  const signature = isRecord(value) && isRecord(value.signature) ? value.signature : value;
  if (!isRecord(signature)) throw new UsageError(`${file} must hold a signature ({"input": …, "output": …})`);
  return signature;
}

/** `--labels a,b,c`, or `--labels @file` (a JSON list, or one label a line). */
export async function readLabels(option: string): Promise<string[]> {
  if (!option.startsWith('@')) return option.split(',').map((label) => label.trim());
  const text = (await readBounded(option.slice(1))).toString('utf8');
  try {
    const value = JSON.parse(text) as unknown;
    if (Array.isArray(value)) return value.map(String);
  } catch {
    // Not JSON: one label a line.
  }
  return text.split(/\r?\n/).filter((line) => line.trim() !== '');
}

function parseJson(bytes: Buffer, file: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new UsageError(`${file} is neither JSON nor a PNG, JPEG or WebP image`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
