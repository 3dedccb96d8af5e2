import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type { Logger };

/** How log lines are written: one JSON object a line (for collectors), or a human line (for a terminal). */
export type LogFormat = 'json' | 'pretty';

/** The access log's message; in pretty form its line reads `POST /graphql 200 3.1 ms`. */
export const REQUEST_COMPLETED = 'request completed';

/** Lines wait in memory until this many bytes are buffered (one write for dozens of access-log lines)… */
const BUFFERED_BYTES = 4096;
/** …or this long at most; warnings and errors are written at once. */
const FLUSH_EVERY_MS = 250;

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  // A write to stdout per line cost ~25 µs of CPU per request (a thread-pool round trip each; measured with the
  // access log on and off), more than the rest of a small request's transport; buffered, the lines still reach
  // stdout within FLUSH_EVERY_MS, and at exit (pino flushes its destination then).
  const destination = pino.destination({
    dest: 1,
    sync: false,
    minLength: BUFFERED_BYTES,
    periodicFlush: FLUSH_EVERY_MS,
  });
  const warn = pino.levels.values.warn!;
  const stream = format === 'pretty' ? prettyLines(destination) : destination;
  return pino(
    {
      level,
      base: { service: 'modelmarket' },
      // Credentials never reach the logs, whatever logs them.
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers.cookie',
          '*.password',
          '*.refreshToken',
          '*.accessToken',
          '*.secret',
        ],
        censor: '[redacted]',
      },
      hooks: {
        logMethod(args, write, levelValue) {
          write.apply(this, args);
          if (levelValue >= warn) destination.flush();
        },
      },
    },
    stream,
  );
}

/**
 * Formats each JSON line on the event loop (a few µs: pretty is for a terminal, not a loaded server) into the same
 * buffered destination, so the warn/error flush and the flush at exit still hold. pino-pretty's own transport would
 * format in a worker thread but buffer outside that destination's reach.
 */
function prettyLines(destination: DestinationStream): DestinationStream {
  const pretty = prettyFactory({
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service',
    singleLine: true,
  });
  return {
    write(line: string) {
      const log = JSON.parse(line) as Record<string, unknown>;
      if (log.msg === REQUEST_COMPLETED) {
        const { method, path, status, ms, ...rest } = log;
        destination.write(
          pretty({ ...rest, msg: `${String(method)} ${String(path)} ${String(status)} ${String(ms)} ms` }),
        );
      } else destination.write(pretty(log));
    },
  };
}
