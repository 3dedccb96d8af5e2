// Reading a request body on node:http: decompressed as the client says (gzip, deflate, br, like Express's body
// parsers), never more than a limit, refused as soon as it is known to be larger (the declared length, or the
// bytes that arrived so far), without reading the rest.
import type { IncomingMessage } from 'node:http';
import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';

/** Why a body could not be read: an HTTP status and a code for the client. */
export class RequestBodyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function tooLarge(limit: number): RequestBodyError {
  return new RequestBodyError(413, 'PAYLOAD_TOO_LARGE', `Request body too large (at most ${limit} bytes)`);
}

/** The stream that decodes the body's content-encoding, or null for an unencoded body. */
function decoder(req: IncomingMessage): Transform | null {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  switch (encoding) {
    case 'identity':
      return null;
    case 'gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      throw new RequestBodyError(415, 'BAD_REQUEST', `Unsupported content-encoding "${encoding}"`);
  }
}

/** The whole body (decompressed); rejects with RequestBodyError, or when the client goes away. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) throw tooLarge(limit);
    const decoding = decoder(req);
    const stream: Readable = decoding ? req.pipe(decoding) : req;
    const chunks: Buffer[] = [];
    let received = 0;
    const fail = (error: Error) => {
      if (decoding) {
        req.unpipe(decoding);
        decoding.destroy();
      }
      stream.off('data', onData);
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      if (received > limit) fail(tooLarge(limit));
      else chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received)));
    // A client that goes away mid-body: nobody reads the answer, but the handler must end.
    const aborted = () => fail(new RequestBodyError(400, 'BAD_REQUEST', 'Request aborted'));
    req.once('error', aborted);
    req.once('close', () => {
      if (!req.complete) aborted();
    });
    if (decoding) decoding.once('error', () => fail(new RequestBodyError(400, 'BAD_REQUEST', 'Malformed body')));
  });
}
