// Graceful stop of the HTTP surface. Once draining, nothing new starts: the listener is closed, idle keep-alive
// connections are closed, responses still to be written carry `Connection: close`, and a request arriving on a
// connection still open is answered 503 SERVICE_UNAVAILABLE. In-flight work is tracked by its handler's
// completion, not by its socket: a GraphQL execution goes on (and bills) after its client disconnected, so the
// engine and the database must outlive it.
import type http from 'node:http';
import type { Request, RequestHandler, Response } from 'express';
import { ErrorCode } from './errors.js';

/** Seconds a client refused during a stop should wait: another instance, or this one restarted, takes over. */
const SHUTDOWN_RETRY_AFTER_SECONDS = 1;
const MAX_LABEL_LENGTH = 100;

/** A handler whose returned promise settles when its work is done (express passes a rejection on). */
export type AsyncHandler = (req: Request, res: Response, next: (error?: unknown) => void) => unknown;
/** Wraps a route handler so that a graceful stop waits for it (HttpDrain.track). */
export type TrackHandler = (handler: AsyncHandler) => RequestHandler;

function refuse(res: Response): void {
  res
    .status(503)
    .set('connection', 'close')
    .set('retry-after', String(SHUTDOWN_RETRY_AFTER_SECONDS))
    .json({
      errors: [
        {
          message: 'The server is shutting down; retry',
          extensions: { code: ErrorCode.SERVICE_UNAVAILABLE, retryAfter: SHUTDOWN_RETRY_AFTER_SECONDS },
        },
      ],
    });
}

/** What a request is, for the log of work a stop had to cut: method, path and GraphQL operation names. */
function describe(req: Request): string {
  const body: unknown = req.body;
  const operations = (Array.isArray(body) ? body : [body])
    .map((item) => (item as { operationName?: unknown } | undefined)?.operationName)
    .filter((name): name is string => typeof name === 'string');
  const label = `${req.method} ${req.originalUrl.split('?', 1)[0]}${operations.length ? ` ${operations.join(',')}` : ''}`;
  return label.slice(0, MAX_LABEL_LENGTH);
}

export class HttpDrain {
  #draining = false;
  /** Handlers running, by what they serve. */
  readonly #running = new Set<{ label: string }>();
  /** Responses not yet complete, to be told `Connection: close` when the stop begins. */
  readonly #open = new Set<Response>();
  #changed: () => void = () => undefined;

  constructor(private readonly httpServer: http.Server) {}

  /** First middleware: refuses requests once draining. */
  readonly admit: RequestHandler = (_req, res, next) => {
    if (this.#draining) return refuse(res);
    this.#open.add(res);
    res.once('close', () => this.#open.delete(res));
    next();
  };

  readonly track: TrackHandler = (handler) => (req, res, next) => {
    // A request admitted before the stop whose handler had not started yet (its body was still arriving).
    if (this.#draining) return refuse(res);
    const work = { label: describe(req) };
    this.#running.add(work);
    const done = () => {
      this.#running.delete(work);
      this.#changed();
    };
    // A handler that throws at once fails its promise like one that rejects (it is done either way).
    const running = new Promise<unknown>((resolve) => resolve(handler(req, res, next)));
    running.then(done, done);
    return running;
  };

  get inFlight(): number {
    return this.#running.size;
  }

  /** Stops accepting connections and requests (see the top of this file). */
  stopAccepting(): void {
    this.#draining = true;
    this.httpServer.close();
    for (const res of this.#open) if (!res.headersSent) res.setHeader('connection', 'close');
    this.httpServer.closeIdleConnections();
  }

  /** Waits until no tracked handler runs, or until `deadline` (epoch ms); returns what still runs, by label. */
  async settled(deadline: number): Promise<Record<string, number>> {
    while (this.#running.size > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.#changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#changed = () => undefined;
    const running: Record<string, number> = {};
    for (const { label } of this.#running) running[label] = (running[label] ?? 0) + 1;
    return running;
  }

  /** Ends every connection left (the ones whose responses finished since the stop began included). */
  closeConnections(): void {
    this.httpServer.closeAllConnections();
  }
}
