// modelmarket/client: the typed client of the Modelmarket API (see README "Client library").
export {
  ModelmarketClient,
  type ModelmarketClientOptions,
  type RequestOptions,
  type RetryEvent,
  type RetryOptions,
  type SessionTokens,
  type UploadOptions,
  type UploadedArtifact,
  type UsageCsvFilter,
} from './client.js';
export * from './errors.js';
// The operations' documents and types, for `client.request(Document, variables)` and for typing results.
export * from '../generated/client.js';
