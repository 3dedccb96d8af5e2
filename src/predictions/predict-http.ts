// Predict on one image sent as it is, for clients that hold a file rather than base64:
//   POST /v1/models/:slug/versions/:version/predict
//   POST /v1/models/:slug/predict?version=…            (default: a licensee's pinned version, else latest)
// The body is the image file (Content-Type image/jpeg, image/png or image/webp); `?topK=` and `?contract=` as
// predict's topK and contractId, the `Idempotency-Key` header as its requestId. Authenticated like GraphQL
// (Bearer access token or API key with the PREDICT scope) and run by the same PredictService: the same licence
// checks, quota, metering and usage records (PredictService.predictImageFile, which refuses a model that does
// not take one image before the body is read). Answers the Prediction as JSON with its warnings.
import type { TrackHandler } from '../server/drain.js';
import { BadUserInputError } from '../server/errors.js';
import type { Exchange } from '../server/exchange.js';
import { sendJson } from '../server/http-response.js';
import { queryParam } from '../server/query-params.js';
import { readBody, RequestBodyError } from '../server/request-body.js';
import { sendBodyRouteError } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';

const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);

function topKParam(query: URLSearchParams): number | undefined {
  const raw = queryParam(query, 'topK');
  if (raw === undefined) return undefined;
  // PredictService checks the range; this only refuses what is not a number.
  if (!/^\d{1,6}$/.test(raw)) throw new BadUserInputError('topK must be an integer', 'topK');
  return Number(raw);
}

/** Adds the routes to `router`; `maxBytes` bounds the image file (PREDICT_MAX_IMAGE_BYTES_PER_CALL). */
export function addPredictRoutes(router: Router, services: Services, maxBytes: number, track: TrackHandler): void {
  const handler = track((exchange: Exchange) =>
    (async () => {
      const { req, res } = exchange;
      const actor = await exchange.actor();
      assertAllowed(actor.principal, { scope: 'PREDICT' });
      const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
      if (!IMAGE_TYPES.has(type)) {
        throw new RequestBodyError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          'Send the image file as the body with Content-Type image/jpeg, image/png or image/webp',
        );
      }
      const query = new URLSearchParams(exchange.search);
      const { slug, version } = exchange.params as { slug: string; version?: string };
      const idempotencyKey = req.headers['idempotency-key'];
      const input = {
        model: slug,
        version: version ?? queryParam(query, 'version') ?? null,
        topK: topKParam(query),
        contractId: queryParam(query, 'contract') ?? null,
        requestId: typeof idempotencyKey === 'string' ? idempotencyKey : null,
      };
      const { prediction, warnings } = await services.predictions.predictImageFile(actor, input, () =>
        readBody(req, maxBytes),
      );
      const { modelVersion, ...rest } = prediction;
      sendJson(res, 200, { ...rest, modelVersion: { id: modelVersion.id, version: modelVersion.version }, warnings });
    })().catch((error: unknown) => sendBodyRouteError(exchange, error)),
  );
  router.add('POST', '/v1/models/:slug/versions/:version/predict', handler);
  router.add('POST', '/v1/models/:slug/predict', handler);
}
