// GET /v1/usage.csv?from&to&model&contract&consumer: the caller's visible usage records as streamed CSV,
// with the same filters and the same visibility rules as the `usage` query.
import { GraphQLError } from 'graphql';
import type { TrackHandler } from '../server/drain.js';
import type { Exchange } from '../server/exchange.js';
import { queryParam } from '../server/query-params.js';
import { sendUnexpected } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';
import { assertStorableText } from '../server/text.js';
import type { UsageFilter } from './usage-service.js';

function dateParam(query: URLSearchParams, name: string): Date | undefined {
  const raw = queryParam(query, name);
  if (raw === undefined) return undefined;
  const date = new Date(raw);
  // Years PostgreSQL's timestamptz holds and usage can have: a wider one failed after the CSV headers were sent.
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1970 || year > 9999) {
    throw new GraphQLError(`${name} must be an ISO-8601 date-time between 1970 and 9999`, {
      extensions: { code: 'BAD_USER_INPUT', field: name },
    });
  }
  return date;
}

function stringParam(query: URLSearchParams, name: string): string | undefined {
  const raw = queryParam(query, name);
  if (raw === undefined || raw === '') return undefined;
  assertStorableText(raw, name);
  return raw;
}

/** Adds the route to `router`; `track` makes a graceful stop wait for each export. */
export function addUsageRoutes(router: Router, services: Services, track: TrackHandler): void {
  router.add(
    'GET_ONLY',
    '/v1/usage.csv',
    track((exchange: Exchange) =>
      (async () => {
        const { res } = exchange;
        const actor = await exchange.actor();
        assertAllowed(actor.principal, { scope: 'READ_USAGE' });
        const query = new URLSearchParams(exchange.search);
        const filter: UsageFilter = {
          from: dateParam(query, 'from'),
          to: dateParam(query, 'to'),
          model: stringParam(query, 'model'),
          contract: stringParam(query, 'contract'),
          consumer: stringParam(query, 'consumer'),
        };
        res.statusCode = 200;
        res.setHeader('content-type', 'text/csv; charset=utf-8');
        res.setHeader('content-disposition', 'attachment; filename="usage.csv"');
        await services.usage.exportCsv(actor, filter, res);
        res.end();
      })().catch((error: unknown) => {
        if (exchange.res.headersSent) {
          exchange.log.error({ err: error }, 'usage export failed midway');
          exchange.res.destroy();
          return;
        }
        sendUnexpected(exchange, error);
      }),
    ),
  );
}
