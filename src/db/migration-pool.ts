import pg from 'pg';

// PostgreSQL catalog columns of type `name` (OID 19) and `"char"` (OID 18) are not mapped by
// @prisma/adapter-pg, which breaks the schema engine's introspection (prisma/orm#27403). Both are plain
// text on the wire, so the migration connection reports them as `text` (OID 25).
const TEXT_OID = 25;
const CATALOG_TEXT_OIDS = new Set([18, 19]);

type QueryResultLike = { fields?: { dataTypeID: number }[] };

function relabelCatalogText<T>(result: T): T {
  for (const field of (result as QueryResultLike).fields ?? []) {
    if (CATALOG_TEXT_OIDS.has(field.dataTypeID)) field.dataTypeID = TEXT_OID;
  }
  return result;
}

class CatalogTextClient extends pg.Client {
  // pg's overloads cannot be re-declared generically. Pool.query calls this with a trailing callback;
  // a checked-out client (transactions) calls it without one and gets a promise.
  override query(...args: unknown[]): never {
    const last = args.at(-1);
    if (typeof last === 'function') {
      args[args.length - 1] = (err: unknown, result: unknown) =>
        (last as (e: unknown, r: unknown) => void)(err, err ? result : relabelCatalogText(result));
    }
    const pending = (super.query as (...a: unknown[]) => unknown)(...args);
    return (pending instanceof Promise ? pending.then(relabelCatalogText) : pending) as never;
  }
}

/** A pg pool for the Prisma schema engine (migrate deploy / diff), with the catalog-type fix applied. */
export function migrationPool(connectionString: string): pg.Pool {
  // allowExitOnIdle: the CLI never ends the pool, and idle clients would hold it open for 10 s.
  return new pg.Pool({
    connectionString,
    max: 2,
    idleTimeoutMillis: 50,
    allowExitOnIdle: true,
    Client: CatalogTextClient,
  });
}
