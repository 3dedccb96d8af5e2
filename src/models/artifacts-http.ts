// The TensorFlow.js-native artifact endpoints:
//   POST /v1/artifacts                  ← model.save(tf.io.http(url, {requestInit: {headers}})), or a graph
//                                          model's model.json and shards, each a part
//   GET  /v1/versions/:id/model.json     → tf.loadLayersModel(url, {requestInit: {headers}}) (graph models:
//                                          tf.loadGraphModel)
//   GET  /v1/versions/:id/model.weights.bin
// Authenticated exactly like GraphQL (Bearer access token or API key); API keys download with the DOWNLOAD
// scope (owners and admins also with MANAGE_MODELS). Every file served is metered and audited.
import busboy from 'busboy';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AuditAction } from '../audit/audit-service.js';
import { requireUserId } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { TrackHandler } from '../server/drain.js';
import type { Exchange } from '../server/exchange.js';
import { isUuid } from '../server/ids.js';
import { sendJson } from '../server/http-response.js';
import { sendRestError as sendError, sendUnexpected } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';
import {
  ArtifactPartsError,
  formatBytes,
  InvalidArtifactError,
  MODEL_JSON_EXPECTED,
  WEIGHTS_FILE,
  type UploadedFiles,
} from './artifact-service.js';
import { assertDownloadScope, canManage, canView } from './model-policy.js';

const MAX_FILES = 64;
/** Text fields are never part of an artifact; a few are read only to be named in the refusal. */
const MAX_FIELDS = 16;
const MAX_FIELD_BYTES = 64 * 1024;

class UploadTooLarge extends Error {}

/** Whether the request sends a multipart body (what `model.save(tf.io.http(…))` sends). */
function isMultipart(req: IncomingMessage): boolean {
  const type = req.headers['content-type'];
  return type !== undefined && /^multipart\/form-data\s*(;|$)/i.test(type);
}

/** One part of a multipart upload, as received. */
interface ReceivedPart {
  /** The part's form name (`-F name=@file`, and what `tf.io.http` names each file): what the part is taken for. */
  name: string;
  /** The uploaded file's own name, absent for a text field. */
  filename: string | undefined;
  contentType: string;
  bytes: Buffer;
}

/** Reads a multipart upload into memory, refusing more than `maxBytes` in all. */
function readMultipart(req: IncomingMessage, maxBytes: number): Promise<ReceivedPart[]> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { files: MAX_FILES, fileSize: maxBytes, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES },
      });
    } catch {
      reject(new InvalidArtifactError('Send multipart/form-data with model.json and its weights file(s)'));
      return;
    }
    const parts: ReceivedPart[] = [];
    let total = 0;
    let failure: Error | undefined;
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        total += chunk.byteLength;
        if (total > maxBytes) failure ??= new UploadTooLarge();
        if (!failure) chunks.push(chunk);
      });
      stream.on('limit', () => (failure ??= new UploadTooLarge()));
      stream.on('end', () =>
        parts.push({ name, filename: info.filename, contentType: info.mimeType, bytes: Buffer.concat(chunks) }),
      );
    });
    // Text fields are never artifact files, but `-F model.json=model.json` (no @) sends one: listed in refusals.
    parser.on('field', (name, value, info) =>
      parts.push({ name, filename: undefined, contentType: info.mimeType, bytes: Buffer.from(value) }),
    );
    parser.on('filesLimit', () => (failure ??= new InvalidArtifactError(`at most ${MAX_FILES} files per upload`)));
    parser.on(
      'fieldsLimit',
      () => (failure ??= new InvalidArtifactError(`at most ${MAX_FIELDS} text fields per upload`)),
    );
    parser.on('error', () => reject(new InvalidArtifactError('malformed multipart body')));
    parser.on('close', () => (failure ? reject(failure) : resolve(parts)));
    req.pipe(parser);
  });
}

/** `weights.bin (renamed.bin, 3.2 MB)`: a part as the uploader can recognise it in a refusal. */
function describePart(part: ReceivedPart): string {
  const details: string[] = [];
  if (part.filename === undefined) details.push('a text field, not a file: send a file with -F name=@path');
  else if (part.filename && part.filename !== part.name) details.push(part.filename);
  if (part.filename !== undefined && part.contentType !== 'application/octet-stream') details.push(part.contentType);
  details.push(formatBytes(part.bytes.byteLength));
  return `${part.name} (${details.join(', ')})`;
}

function receivedParts(parts: ReceivedPart[]): string {
  return parts.length ? `received parts: ${parts.map(describePart).join(', ')}` : 'received no parts';
}

/**
 * The files of an upload by part name, the name `tf.io.http` and `curl -F name=@file` both set (a file's own
 * name is only where it came from: `-F model.json=@export/my-model.json` is the model.json part).
 */
function uploadedFiles(parts: ReceivedPart[]): UploadedFiles {
  const files = new Map<string, Buffer>();
  for (const part of parts) {
    if (part.filename === undefined) continue;
    if (files.has(part.name)) {
      throw new ArtifactPartsError(`the part ${part.name} was sent twice; each file goes in a part of its own name`);
    }
    files.set(part.name, part.bytes);
  }
  const modelJson = files.get('model.json');
  if (!modelJson) throw new ArtifactPartsError(`the upload has no model.json part: ${MODEL_JSON_EXPECTED}`);
  files.delete('model.json');
  return { modelJson, weights: files };
}

/** Adds the routes to `router`; `track` makes a graceful stop wait for each request's handler. */
export function addArtifactRoutes(
  router: Router,
  services: Services,
  prisma: Prisma,
  maxBytes: number,
  track: TrackHandler,
): void {
  const handle = (fn: (exchange: Exchange) => Promise<void>) =>
    track((exchange) =>
      fn(exchange).catch((error: unknown) => {
        const { res } = exchange;
        if (error instanceof UploadTooLarge)
          return sendError(res, 413, 'PAYLOAD_TOO_LARGE', `Artifacts are limited to ${maxBytes} bytes`);
        if (error instanceof InvalidArtifactError) return sendError(res, error.status, 'BAD_ARTIFACT', error.message);
        sendUnexpected(exchange, error);
      }),
    );

  router.add(
    'POST',
    '/v1/artifacts',
    handle(async (exchange) => {
      const { req, res } = exchange;
      const actor = await exchange.actor();
      assertAllowed(actor.principal, { roles: ['OWNER', 'ADMIN'], scope: 'MANAGE_MODELS' });
      if (!isMultipart(req)) {
        return sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'Send multipart/form-data (what tf.io.http sends)');
      }
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > maxBytes + 64 * 1024) throw new UploadTooLarge();
      const parts = await readMultipart(req, maxBytes);
      try {
        sendJson(res, 201, await services.artifacts.upload(actor, uploadedFiles(parts)));
      } catch (error) {
        if (error instanceof ArtifactPartsError) error.message += `; ${receivedParts(parts)}`;
        throw error;
      }
    }),
  );

  router.add(
    'GET_ONLY',
    '/v1/versions/:id/:file',
    handle(async (exchange) => {
      const { res } = exchange;
      const actor = await exchange.actor();
      const { id, file } = exchange.params as { id: string; file: string };
      if (!isUuid(id) || (file !== 'model.json' && file !== WEIGHTS_FILE)) {
        return sendError(res, 404, 'NOT_FOUND', 'No such file');
      }
      const version = await prisma.modelVersion.findUnique({
        where: { id },
        include: {
          model: { select: { id: true, ownerId: true, visibility: true } },
        },
      });
      if (!version || !canView(actor.principal, version.model))
        return sendError(res, 404, 'NOT_FOUND', 'No such version');
      assertDownloadScope(actor.principal, version.model);
      // Owners and admins get the owner-marked weights; licensees with download rights their own
      // fingerprinted copy; nobody gets the unmarked upload (unless marking was opted out).
      let sha256: string;
      let contractId: string | null = null;
      if (canManage(actor.principal, version.model)) {
        sha256 = await services.variants.servedSha256(version);
      } else {
        contractId = await services.contracts.downloadContract(actor, version.model.id, version);
        sha256 = await services.watermarks.licenseeCopy(contractId, version);
      }
      // Every file is metered and audited: the weights can be fetched without their model.json.
      await services.audit.record(actor, {
        action: AuditAction.VERSION_DOWNLOADED,
        targetType: 'ModelVersion',
        targetId: version.id,
        details: { contract: contractId, sha256, file },
      });
      await services.metering.record({
        predictionId: randomUUID(),
        consumerId: requireUserId(actor.principal),
        apiKeyId: actor.principal.kind === 'apiKey' ? actor.principal.apiKeyId : null,
        modelId: version.modelId,
        modelVersionId: version.id,
        contract: null,
        units: 0,
        status: 'DOWNLOAD',
        latencyMs: 0,
        requestId: null,
        idempotentResponse: undefined,
      });
      const stored = await services.artifacts.read(sha256);
      res.setHeader('cache-control', 'private, no-store');
      if (file === 'model.json') res.setHeader('content-type', 'application/json; charset=utf-8');
      else res.setHeader('content-type', 'application/octet-stream');
      res.end(file === 'model.json' ? stored.modelJson : stored.weights);
    }),
  );
}
