// GET /v1/batch-predictions/:id/results.jsonl: a batch's results so far, streamed as JSONL (a line per row done, in
// row order). Authenticated like GraphQL (Bearer access token, or an API key with the PREDICT scope); only the
// batch's requester (and admins) may read it, anyone else is told it does not exist; once the results expired,
// NOT_FOUND with reason RESULTS_EXPIRED.
import type { TrackHandler } from '../server/drain.js';
import type { Exchange } from '../server/exchange.js';
import { sendUnexpected } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';

export function addBatchPredictionRoutes(router: Router, services: Services, track: TrackHandler): void {
  router.add(
    'GET',
    '/v1/batch-predictions/:id/results.jsonl',
    track((exchange: Exchange) =>
      (async () => {
        const { res } = exchange;
        const actor = await exchange.actor();
        assertAllowed(actor.principal, { scope: 'PREDICT' });
        const id = exchange.params.id!;
        await services.batchPredictions.writeResults(actor, id, res, () => {
          res.statusCode = 200;
          res.setHeader('content-type', 'application/x-ndjson; charset=utf-8');
          res.setHeader('content-disposition', `attachment; filename="batch-${id}.jsonl"`);
        });
        res.end();
      })().catch((error: unknown) => {
        if (exchange.res.headersSent) {
          exchange.log.error({ err: error }, 'batch results download failed midway');
          exchange.res.destroy();
          return;
        }
        sendUnexpected(exchange, error);
      }),
    ),
  );
}
