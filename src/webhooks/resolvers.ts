import { EventType } from '../events/outbox.js';
import type { Resolvers } from '../generated/graphql.js';
import { mutationInput, requiredInputField } from '../server/mutation-inputs.js';

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
    updateWebhookEndpoint: (_parent, { input }, ctx) => {
      const { id: _id, ...changes } = input;
      return ctx.services.webhooks.update(ctx.actor, requiredInputField(input, 'id'), changes);
    },
    disableWebhookEndpoint: (_parent, args, ctx) => ctx.services.webhooks.disable(ctx.actor, mutationInput(args).id),
    enableWebhookEndpoint: (_parent, args, ctx) => ctx.services.webhooks.enable(ctx.actor, mutationInput(args).id),
    rotateWebhookEndpointSecret: (_parent, args, ctx) =>
      ctx.services.webhooks.rotateSecret(ctx.actor, mutationInput(args).id),
    deleteWebhookEndpoint: (_parent, args, ctx) => ctx.services.webhooks.delete(ctx.actor, mutationInput(args).id),
    redeliverWebhook: (_parent, args, ctx) =>
      ctx.services.webhooks.redeliver(ctx.actor, mutationInput(args).deliveryId),
    rotateDefaultWebhookSecret: (_parent, _args, ctx) => ctx.services.webhooks.rotateDefaultSecret(ctx.actor),
  },
};
