// The Open Inference Protocol's REST routes (KServe v2): server metadata and health, model metadata and
// readiness, and infer, over OpenInference (open-inference.ts). Credentials as on every route (Authorization
// or X-API-Key); infer needs the PREDICT scope. Errors are the protocol's `{"error": message}` with our `code`
// (and the error's details) beside it, and the HTTP status of the one table in rest-errors.ts.
import { createRequire } from 'node:module';
import type { TrackHandler } from '../server/drain.js';
import type { Exchange } from '../server/exchange.js';
import { sendJson } from '../server/http-response.js';
import { readJsonBody } from '../server/request-body.js';
import { sendBodyRouteError, type ErrorBody } from '../server/rest-errors.js';
import type { Router } from '../server/router.js';
import { assertAllowed } from '../server/schema.js';
import type { Services } from '../server/services.js';

export interface OpenInferenceRouteOptions {
  /** BODY_LIMIT_BYTES, as for GraphQL. */
  bodyLimitBytes: number;
  /** The server's readiness (the /readyz check). */
  ready: () => Promise<boolean>;
}

const SERVER = (() => {
  const { name, version } = createRequire(import.meta.url)('../../package.json') as { name: string; version: string };
  return { name, version, extensions: [] as string[] };
})();

const oipError: ErrorBody = (code, message, details) => ({ error: message, code, ...details });

export function addOpenInferenceRoutes(
  router: Router,
  services: Services,
  options: OpenInferenceRouteOptions,
  track: TrackHandler,
): void {
  const { openInference } = services;
  const handle = (fn: (exchange: Exchange) => Promise<void>) =>
    track((exchange) => fn(exchange).catch((error: unknown) => sendBodyRouteError(exchange, error, oipError)));

  router.add('GET', '/v2', ({ res }) => sendJson(res, 200, SERVER));
  router.add('GET', '/v2/health/live', ({ res }) => sendJson(res, 200, { live: true }));
  router.add(
    'GET',
    '/v2/health/ready',
    handle(async ({ res }) => {
      const ready = await options.ready();
      sendJson(res, ready ? 200 : 503, { ready });
    }),
  );

  const metadata = handle(async (exchange) => {
    const { name, version } = exchange.params;
    sendJson(exchange.res, 200, await openInference.metadata(await exchange.actor(), name!, version));
  });
  router.add('GET', '/v2/models/:name', metadata);
  router.add('GET', '/v2/models/:name/versions/:version', metadata);

  const modelReady = handle(async (exchange) => {
    const { name, version } = exchange.params;
    const answer = await openInference.ready(await exchange.actor(), name!, version);
    sendJson(exchange.res, answer.ready ? 200 : 503, answer);
  });
  router.add('GET', '/v2/models/:name/ready', modelReady);
  router.add('GET', '/v2/models/:name/versions/:version/ready', modelReady);

  const infer = handle(async (exchange) => {
    const actor = await exchange.actor();
    assertAllowed(actor.principal, { scope: 'PREDICT' });
    const { body } = await readJsonBody(exchange.req, options.bodyLimitBytes);
    const key = exchange.req.headers['idempotency-key'];
    const { name, version } = exchange.params;
    const answer = await openInference.infer(actor, name!, version, body, typeof key === 'string' ? key : null);
    sendJson(exchange.res, 200, answer);
  });
  router.add('POST', '/v2/models/:name/infer', infer);
  router.add('POST', '/v2/models/:name/versions/:version/infer', infer);
}
