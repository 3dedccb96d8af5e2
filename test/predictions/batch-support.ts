// Batch predictions over HTTP for the tests: inputs as a JSONL data set, the GraphQL calls, polling, and the
// results download.
import assert from 'node:assert/strict';
import { authHeaders, gqlAt, type Credentials, type GraphQLResponse } from '../support/server.js';

export const BATCH_FIELDS = `id status processed total failedRows billedUnits topK webhook contractId createdAt startedAt
  completedAt resultsUrl resultsExpireAt error { code message } version { version } dataset { id }`;
export const CREATE_BATCH = `mutation B($input: CreateBatchPredictionInput!) { createBatchPrediction(input: $input) { ${BATCH_FIELDS} } }`;
export const BATCH = `query B($id: ID!) { batchPrediction(id: $id) { ${BATCH_FIELDS} } }`;
export const CANCEL_BATCH = `mutation C($id: ID!) { cancelBatchPrediction(id: $id) { ${BATCH_FIELDS} } }`;

/** Rows as a JSONL data set of inputs: one {"input": …} a line. */
export const inputsJsonl = (inputs: unknown[]) => `${inputs.map((input) => JSON.stringify({ input })).join('\n')}\n`;

/** Starts a batch that must be accepted, on the server at `url` (its GraphQL URL). */
export async function createBatch(url: string, auth: Credentials, input: Record<string, unknown>) {
  const res = await gqlAt(url, CREATE_BATCH, { input }, auth);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createBatchPrediction;
}

const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELED', 'QUOTA_EXCEEDED']);

/** Polls `batchPrediction(id)` until `done` holds of it (default: it ended). */
export async function waitForBatch(
  url: string,
  auth: Credentials,
  id: string,
  done: (batch: any) => boolean = (b) => ENDED.has(b.status),
  timeoutMs = 90_000,
): Promise<any> {
  for (const deadline = Date.now() + timeoutMs; ;) {
    const res: GraphQLResponse = await gqlAt(url, BATCH, { id }, auth);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    if (done(res.data!.batchPrediction)) return res.data!.batchPrediction;
    assert.ok(Date.now() < deadline, `batch ${id} still ${JSON.stringify(res.data!.batchPrediction)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GET the results; the status and, when 200, the parsed lines. */
export async function downloadResults(origin: string, auth: Credentials, path: string) {
  const response = await fetch(`${origin}${path}`, { headers: authHeaders(auth) });
  const text = await response.text();
  if (response.status !== 200) return { status: response.status, body: JSON.parse(text), lines: [] as any[] };
  assert.match(response.headers.get('content-type') ?? '', /application\/x-ndjson/);
  return {
    status: 200,
    body: null,
    lines: text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line)),
  };
}
