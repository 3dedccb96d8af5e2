// POST /v1/datasets[?name=…]: uploads a labelled data set as the body, JSONL (content-type application/x-ndjson,
// application/jsonl) or CSV (text/csv). Authenticated like GraphQL (Bearer access token, or an API key with the
// PREDICT scope, which evaluations need too); the body is read under DATASET_MAX_BYTES (decompressed as the client
// says) and refused as soon as it is known to be larger. 201 with the data set, 200 when the caller had uploaded
// these bytes before.
import type { Dataset } from '../generated/prisma/client.js';
import type { TrackHandler } from '../server/drain.js';
import type { Exchange } from '../server/exchange.js';
import { sendJson } from '../server/http-response.js';
import { queryParam } from '../server/query-params.js';
import { closeIfUnread, readBody } from '../server/request-body.js';
import { sendBodyRouteError, sendRestError } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';
import type { DatasetFormat } from './dataset-format.js';

const FORMAT_BY_TYPE: Record<string, DatasetFormat> = {
  'application/x-ndjson': 'JSONL',
  'application/jsonl': 'JSONL',
  'application/jsonlines': 'JSONL',
  'application/x-jsonlines': 'JSONL',
  'text/csv': 'CSV',
};

function formatOf(contentType: string | undefined): DatasetFormat | undefined {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return FORMAT_BY_TYPE[type];
}

/** A data set as the REST route and GraphQL's `Dataset` both describe it. */
export function datasetJson(dataset: Dataset) {
  const { id, name, format, sha256, sizeBytes, rows, columns, createdAt } = dataset;
  return { id, name, format, sha256, sizeBytes, rows, columns, createdAt };
}

export function addDatasetRoutes(router: Router, services: Services, track: TrackHandler): void {
  router.add(
    'POST',
    '/v1/datasets',
    track((exchange: Exchange) =>
      (async () => {
        const { req, res } = exchange;
        const actor = await exchange.actor();
        assertAllowed(actor.principal, { scope: 'PREDICT' });
        const format = formatOf(req.headers['content-type']);
        if (!format) {
          closeIfUnread(req, res);
          return sendRestError(
            res,
            415,
            'UNSUPPORTED_MEDIA_TYPE',
            'Send JSONL (content-type application/x-ndjson) or CSV (text/csv)',
          );
        }
        const name = queryParam(new URLSearchParams(exchange.search), 'name');
        const bytes = await readBody(req, services.datasets.maxBytes);
        const { dataset, created } = await services.datasets.upload(actor, { bytes, format, name });
        sendJson(res, created ? 201 : 200, datasetJson(dataset));
      })().catch((error: unknown) => sendBodyRouteError(exchange, error)),
    ),
  );
}
