// Graceful stop of the HTTP surface. Once draining, nothing new starts: the listener is closed, idle keep-alive
// connections are closed, responses still to be written carry `Connection: close`, and a request arriving on a
// connection still open is answered 503 SERVICE_UNAVAILABLE. In-flight work is tracked by its handler's
// completion, not by its socket: a GraphQL execution goes on (and bills) after its client disconnected, so the
// engine and the database must outlive it.
import type http from 'node:http';
import type { ServerResponse } from 'node:http';
import { ErrorCode } from './errors.js';
import type { Exchange } from './exchange.js';
import { sendJson } from './http-response.js';
import type { RouteHandler } from './router.js';

/** Seconds a client refused during a stop should wait: another instance, or this one restarted, takes over. */
const SHUTDOWN_RETRY_AFTER_SECONDS = 1;
const MAX_LABEL_LENGTH = 100;

/** Wraps a route handler so that a graceful stop waits for it (HttpDrain.track). */
export type TrackHandler = (handler: RouteHandler) => RouteHandler;

function refuse(res: ServerResponse): void {
  res.setHeader('connection', 'close');
  res.setHeader('retry-after', String(SHUTDOWN_RETRY_AFTER_SECONDS));
  sendJson(res, 503, {
    errors: [
      {
        message: 'The server is shutting down; retry',
        extensions: { code: ErrorCode.SERVICE_UNAVAILABLE, retryAfter: SHUTDOWN_RETRY_AFTER_SECONDS },
      },
    ],
  });
}

export class HttpDrain {
  #draining = false;
  /** Handlers running, by what they serve. */
  readonly #running = new Set<{ label: string }>();
  /** Responses not yet complete, to be told `Connection: close` when the stop begins. */
  readonly #open = new Set<ServerResponse>();
  #changed: () => void = () => undefined;

  constructor(private readonly httpServer: http.Server) {}

  /** Every request first: false when it was refused (draining); `release` it once answered. */
  admit(res: ServerResponse): boolean {
    if (this.#draining) {
      refuse(res);
      return false;
    }
    this.#open.add(res);
    return true;
  }

  /** The request's handler is done: its response was written (or its client is gone). */
  release(res: ServerResponse): void {
    this.#open.delete(res);
  }

  /**
   * Runs a request's work so that a stop waits for it; a request admitted before the stop whose work had not
   * started yet (its body was still arriving) is refused instead. The log of work a stop had to cut names it by
   * method, path and GraphQL `operations`.
   */
  async run(exchange: Exchange, work: () => unknown, operations: string[] = []): Promise<void> {
    if (this.#draining) return refuse(exchange.res);
    const label = `${exchange.req.method} ${exchange.path}${operations.length ? ` ${operations.join(',')}` : ''}`;
    const entry = { label: label.slice(0, MAX_LABEL_LENGTH) };
    this.#running.add(entry);
    try {
      await work();
    } finally {
      this.#running.delete(entry);
      this.#changed();
    }
  }

  readonly track: TrackHandler = (handler) => (exchange) => this.run(exchange, () => handler(exchange));

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
