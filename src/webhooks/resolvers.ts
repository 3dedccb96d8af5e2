import { EventType } from '../events/outbox.js';
import type { Resolvers } from '../generated/graphql.js';

export const webhookResolvers: Resolvers = {
  // The API names an event type PREDICTION_COMPLETED; the outbox, and a delivery's body, `prediction.completed`.
  WebhookEventType: EventType,
  Query: {
    webhookEndpoints: (_parent, { account }, ctx) => ctx.services.webhooks.list(ctx.actor, account),
    webhookDeliveries: (_parent, { endpoint, filter, first, after }, ctx) =>
      ctx.services.webhooks.listDeliveries(ctx.actor, endpoint, filter?.status, first ?? 20, after),
  },
  Mutation: {
    createWebhookEndpoint: (_parent, { input }, ctx) => ctx.services.webhooks.create(ctx.actor, input),
    updateWebhookEndpoint: (_parent, { id, input }, ctx) => ctx.services.webhooks.update(ctx.actor, id, input),
    disableWebhookEndpoint: (_parent, { id }, ctx) => ctx.services.webhooks.disable(ctx.actor, id),
    enableWebhookEndpoint: (_parent, { id }, ctx) => ctx.services.webhooks.enable(ctx.actor, id),
    rotateWebhookEndpointSecret: (_parent, { id }, ctx) => ctx.services.webhooks.rotateSecret(ctx.actor, id),
    deleteWebhookEndpoint: (_parent, { id }, ctx) => ctx.services.webhooks.delete(ctx.actor, id),
    redeliverWebhook: (_parent, { deliveryId }, ctx) => ctx.services.webhooks.redeliver(ctx.actor, deliveryId),
    rotateDefaultWebhookSecret: (_parent, _args, ctx) => ctx.services.webhooks.rotateDefaultSecret(ctx.actor),
  },
};
