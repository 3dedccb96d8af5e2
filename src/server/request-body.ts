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

/** One body being read: its chunks so far, and how its promise settles. */
class BodyReader {
  readonly #chunks: Buffer[] = [];
  #received = 0;
  #failed = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly decoding: Transform | null,
    private readonly limit: number,
    private readonly resolve: (body: Buffer) => void,
    private readonly reject: (error: RequestBodyError) => void,
  ) {}

  data(chunk: Buffer): void {
    if (this.#failed) return;
    this.#received += chunk.byteLength;
    if (this.#received > this.limit) this.fail(tooLarge(this.limit));
    else this.#chunks.push(chunk);
  }

  end(): void {
    const chunks = this.#chunks;
    this.resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#received));
  }

  fail(error: RequestBodyError): void {
    if (this.#failed) return;
    this.#failed = true;
    if (this.decoding) {
      this.req.unpipe(this.decoding);
      this.decoding.destroy();
    }
    this.reject(error);
  }
}

/** The whole body (decompressed); rejects with RequestBodyError, also when the client goes away mid-body. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > limit) throw tooLarge(limit);
    const decoding = decoder(req);
    const stream: Readable = decoding ? req.pipe(decoding) : req;
    const reader = new BodyReader(req, decoding, limit, resolve, reject);
    stream.on('data', (chunk: Buffer) => reader.data(chunk));
    stream.once('end', () => reader.end());
    req.once('error', () => reader.fail(new RequestBodyError(400, 'BAD_REQUEST', 'Request aborted')));
    req.once('close', () => {
      if (!req.complete) reader.fail(new RequestBodyError(400, 'BAD_REQUEST', 'Request aborted'));
    });
    decoding?.once('error', () => reader.fail(new RequestBodyError(400, 'BAD_REQUEST', 'Malformed body')));
  });
}
