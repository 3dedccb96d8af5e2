// An artifact directory as `tensorflowjs_converter` or `model.save('file://…')` writes it (model.json and the
// weight files its weightsManifest names), streamed to POST /v1/artifacts as the multipart body `tf.io.http`
// sends, without holding the weights in memory.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { BadArtifactError, NetworkError } from './errors.js';

/** model.json is a topology, not weights: the server refuses larger ones too. */
const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024;

interface Part {
  name: string;
  file: string;
  size: number;
}

export interface ArtifactFiles {
  parts: Part[];
  /** Bytes of the whole multipart body (what onProgress counts to). */
  contentLength: number;
  boundary: string;
}

export interface RawResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

const bad = (message: string) => new BadArtifactError(message, { code: 'BAD_ARTIFACT' });

function partHead(boundary: string, part: Part): Buffer {
  const type = part.name === 'model.json' ? 'application/json' : 'application/octet-stream';
  return Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"; filename="${part.name}"\r\n` +
      `Content-Type: ${type}\r\n\r\n`,
  );
}

const closing = (boundary: string) => Buffer.from(`--${boundary}--\r\n`);

/**
 * The real path of `file` when it is a regular file inside `root` (a real path too), else undefined. Compared
 * after symlinks are resolved: a `w.bin -> ~/.ssh/id_rsa` link inside the directory would otherwise be uploaded.
 */
async function fileInside(root: string, file: string): Promise<{ real: string; size: number } | undefined> {
  const real = await realpath(file).catch(() => undefined);
  if (real === undefined || !real.startsWith(root + path.sep)) return undefined;
  const info = await stat(real).catch(() => undefined);
  return info?.isFile() ? { real, size: info.size } : undefined;
}

/** Finds model.json and the weight files it names in `dir`; refuses files that are (or lead) outside it. */
export async function readArtifactDir(dir: string): Promise<ArtifactFiles> {
  const root = path.resolve(dir);
  const realRoot = await realpath(root).catch(() => undefined);
  if (realRoot === undefined) throw bad(`${root} has no model.json`);
  const modelJsonPath = path.join(root, 'model.json');
  const info = await stat(modelJsonPath).catch(() => undefined);
  if (!info?.isFile()) throw bad(`${root} has no model.json`);
  const modelJson = await fileInside(realRoot, modelJsonPath);
  if (!modelJson) throw bad(`${modelJsonPath} leads outside ${root}`);
  if (modelJson.size > MAX_MODEL_JSON_BYTES) throw bad(`model.json is over ${MAX_MODEL_JSON_BYTES} bytes`);
  let manifest: unknown;
  try {
    manifest = (JSON.parse(await readFile(modelJson.real, 'utf8')) as { weightsManifest?: unknown }).weightsManifest;
  } catch {
    throw bad('model.json is not JSON');
  }
  if (!Array.isArray(manifest)) throw bad('model.json has no weightsManifest');
  const parts: Part[] = [{ name: 'model.json', file: modelJson.real, size: modelJson.size }];
  for (const group of manifest as { paths?: unknown }[]) {
    if (!Array.isArray(group?.paths)) throw bad('each weightsManifest entry needs a paths array');
    for (const relative of group.paths) {
      const file = path.resolve(root, String(relative));
      const name = path.basename(file);
      // Part names travel inside a quoted header; the server keys the files by base name.
      if (!file.startsWith(root + path.sep) || /["\\\r\n]/.test(name)) {
        throw bad(`weights path ${JSON.stringify(relative)} must name a file inside ${root}`);
      }
      if (parts.some((p) => p.name === name)) throw bad(`weights file ${name} is named twice`);
      const weights = await stat(file).catch(() => undefined);
      if (!weights?.isFile()) throw bad(`weights file ${name} (named in model.json) is missing`);
      const inside = await fileInside(realRoot, file);
      if (!inside) throw bad(`weights file ${name} is a link that leads outside ${root}`);
      // Streamed from the path checked here, not through the link again.
      parts.push({ name, file: inside.real, size: inside.size });
    }
  }
  const boundary = `modelmarket-${randomBytes(12).toString('hex')}`;
  const contentLength =
    parts.reduce((sum, p) => sum + partHead(boundary, p).byteLength + p.size + 2, 0) + closing(boundary).byteLength;
  return { parts, contentLength, boundary };
}

async function writeBody(
  req: http.ClientRequest,
  files: ArtifactFiles,
  onProgress: (sent: number) => void,
): Promise<void> {
  let sent = 0;
  // Waits for the socket to take what was written, so progress reports bytes sent, not bytes buffered.
  const write = async (chunk: Buffer) => {
    if (!req.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const fail = (error: Error) => reject(error);
        req.once('error', fail);
        req.once('drain', () => {
          req.off('error', fail);
          resolve();
        });
      });
    }
    sent += chunk.byteLength;
    onProgress(sent);
  };
  for (const part of files.parts) {
    await write(partHead(files.boundary, part));
    let read = 0;
    for await (const chunk of createReadStream(part.file)) {
      read += (chunk as Buffer).byteLength;
      if (read > part.size) throw bad(`${part.name} changed while it was being uploaded`);
      await write(chunk as Buffer);
    }
    if (read !== part.size) throw bad(`${part.name} changed while it was being uploaded`);
    await write(Buffer.from('\r\n'));
  }
  await write(closing(files.boundary));
  req.end();
}

/** POSTs the artifact; resolves with the server's answer whatever its status (an early 413 included). */
export async function postArtifact(
  url: URL,
  headers: OutgoingHttpHeaders,
  files: ArtifactFiles,
  onProgress: (sent: number, total: number) => void,
  timeoutMs: number,
): Promise<RawResponse> {
  const req = (url.protocol === 'https:' ? https : http).request(url, {
    method: 'POST',
    headers: {
      ...headers,
      'content-type': `multipart/form-data; boundary=${files.boundary}`,
      'content-length': String(files.contentLength),
    },
  });
  req.setTimeout(timeoutMs, () => req.destroy(new Error(`no progress for ${timeoutMs} ms`)));
  let responded = false;
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (res) => {
      responded = true;
      resolve(res);
    });
    req.once('error', reject);
  });
  // A server that refuses early (413, 401) answers and closes while the body is still going: its answer wins,
  // and the write that then fails is of no interest.
  writeBody(req, files, (sent) => onProgress(sent, files.contentLength)).catch((error: Error) => {
    if (!responded) req.destroy(error);
  });
  let res: IncomingMessage;
  try {
    res = await answered;
  } catch (error) {
    if (error instanceof BadArtifactError) throw error;
    throw new NetworkError(`upload to ${url.href} failed: ${(error as Error).message}`, {
      code: 'NETWORK_ERROR',
      cause: error,
    });
  }
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch (error) {
    throw new NetworkError(`the answer to the upload was cut: ${(error as Error).message}`, {
      code: 'NETWORK_ERROR',
      cause: error,
    });
  }
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
}
