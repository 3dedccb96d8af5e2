// GET /v1/usage.csv?from&to&model&contract&consumer: the caller's visible usage records as streamed CSV,
// with the same filters and the same visibility rules as the `usage` query.
import express, { type Request, type Response } from 'express';
import { GraphQLError } from 'graphql';
import type { TrackHandler } from '../server/drain.js';
import { sendUnexpected } from '../server/rest-errors.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';
import { assertStorableText } from '../server/text.js';
import type { UsageFilter } from './usage-service.js';

function dateParam(req: Request, name: string): Date | undefined {
  const raw = req.query[name];
  if (raw === undefined) return undefined;
  const date = typeof raw === 'string' ? new Date(raw) : new Date(NaN);
  // Years PostgreSQL's timestamptz holds and usage can have: a wider one failed after the CSV headers were sent.
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1970 || year > 9999) {
    throw new GraphQLError(`${name} must be an ISO-8601 date-time between 1970 and 9999`, {
      extensions: { code: 'BAD_USER_INPUT', field: name },
    });
  }
  return date;
}

function stringParam(req: Request, name: string): string | undefined {
  const raw = req.query[name];
  if (typeof raw !== 'string' || raw === '') return undefined;
  assertStorableText(raw, name);
  return raw;
}

/** `track` makes a graceful stop wait for each export. */
export function usageRoutes(services: Services, track: TrackHandler): express.Router {
  const router = express.Router();
  router.get(
    '/v1/usage.csv',
    track((req: Request, res: Response) =>
      (async () => {
        const principal = await services.authenticator.authenticate(req.headers);
        assertAllowed(principal, { scope: 'READ_USAGE' });
        const filter: UsageFilter = {
          from: dateParam(req, 'from'),
          to: dateParam(req, 'to'),
          model: stringParam(req, 'model'),
          contract: stringParam(req, 'contract'),
          consumer: stringParam(req, 'consumer'),
        };
        const actor = { principal, ip: req.ip ?? 'unknown', requestId: String(req.id) };
        res.status(200).type('text/csv; charset=utf-8').set('content-disposition', 'attachment; filename="usage.csv"');
        await services.usage.exportCsv(actor, filter, res);
        res.end();
      })().catch((error: unknown) => {
        if (res.headersSent) {
          req.log.error({ err: error }, 'usage export failed midway');
          res.destroy();
          return;
        }
        sendUnexpected(req, res, error);
      }),
    ),
  );
  return router;
}
