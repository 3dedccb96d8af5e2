// The SQL a test server sends, for tests that prove a request batches its reads: test servers run in this
// process, so every statement their pool (Prisma's driver adapter included) sends goes through pg.Client.
import pg from 'pg';

/** The text of every statement sent by any pg client of this process while `during` runs, in order. */
export async function statementsDuring(during: () => Promise<unknown>): Promise<string[]> {
  const statements: string[] = [];
  const prototype = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const send = prototype.query;
  prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const [query] = args;
    statements.push(typeof query === 'string' ? query : String((query as { text?: unknown } | null)?.text ?? ''));
    return send.apply(this, args);
  };
  try {
    await during();
  } finally {
    prototype.query = send;
  }
  return statements;
}
