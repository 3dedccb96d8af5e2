// Plans and contracts through the public API, for the licensing and metering tests.
import assert from 'node:assert/strict';
import type { BillableContract } from '../../src/metering/metering-service.js';
import { signUp } from './fixtures.js';
import { publishedMlp } from './models.js';
import type { Credentials, TestServer } from './server.js';

export const CREATE_PLAN = `mutation Plan($input: CreateLicensePlanInput!) { createLicensePlan(input: $input) {
  id name versions pricePerPrediction currency predictionQuota period rateLimitPerMinute durationDays requiresApproval status revision } }`;
export const ACCEPT = `mutation Accept($planId: ID!) { acceptLicense(planId: $planId) {
  id status termsDigest predictionsUsed predictionQuota periodResetsAt startsAt expiresAt certificate
  terms { planName planRevision versions pricePerPrediction currency predictionQuota period } } }`;
export const CONTRACT_FIELDS = 'id status statusReason predictionsUsed predictionQuota certificate';

export const PLAN_DEFAULTS = {
  name: 'Standard',
  pricePerPrediction: '0.002',
  currency: 'EUR',
  period: 'MONTH',
  commercialUse: true,
  downloadAllowed: false,
  requiresApproval: false,
};

export async function createPlan(
  server: TestServer,
  auth: Credentials,
  model: string,
  input: Record<string, unknown> = {},
) {
  const res = await server.gql(CREATE_PLAN, { input: { ...PLAN_DEFAULTS, model, ...input } }, auth);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.createLicensePlan as { id: string; revision: number };
}

export async function accept(server: TestServer, auth: Credentials, planId: string) {
  const res = await server.gql(ACCEPT, { planId }, auth);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.acceptLicense as {
    id: string;
    status: string;
    certificate: string | null;
    termsDigest: string;
    terms: any;
  };
}

export async function transition(server: TestServer, auth: Credentials, mutation: string, id: string, reason?: string) {
  const args = reason === undefined ? '$id: ID!' : '$id: ID!, $reason: String!';
  const call = reason === undefined ? 'id: $id' : 'id: $id, reason: $reason';
  return server.gql(`mutation T(${args}) { ${mutation}(${call}) { ${CONTRACT_FIELDS} } }`, { id, reason }, auth);
}

/**
 * A consumer's contract (quota `predictionQuota`) on a freshly published model, as the metering service sees it
 * (PLAN_DEFAULTS' price, currency and period), for tests that drive MeteringService directly.
 */
export async function billableContract(server: TestServer, predictionQuota: number) {
  const owner = await signUp(server, { role: 'OWNER' });
  const { model } = await publishedMlp(server, { token: owner.token });
  const plan = await createPlan(server, { token: owner.token }, model.slug, { predictionQuota });
  const consumer = await signUp(server);
  const { id } = await accept(server, { token: consumer.token }, plan.id);
  const contract: BillableContract = {
    id,
    unitPrice: PLAN_DEFAULTS.pricePerPrediction,
    currency: PLAN_DEFAULTS.currency,
    rateLimitPerMinute: null,
    period: 'MONTH',
  };
  return { contract, consumerId: consumer.id };
}
