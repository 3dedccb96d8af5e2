// Types the resolvers and the client's operations from schema.graphql (`npm run generate`). Output is built,
// never edited.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: 'schema.graphql',
  generates: {
    'src/generated/graphql.ts': {
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        contextType: '../server/context.js#Context',
        useIndexSignature: true,
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        scalars: { DateTime: 'Date', JSON: 'unknown' },
        // Resolvers see an event type as its outbox name (`prediction.completed`), the API as PREDICTION_COMPLETED.
        enumValues: { WebhookEventType: '../events/outbox.js#EventType' },
        mappers: {
          User: './prisma/client.js#User as UserModel',
          ApiKey: './prisma/client.js#ApiKey as ApiKeyModel',
          Model: './prisma/client.js#Model as ModelModel',
          ModelVersion: './prisma/client.js#ModelVersion as ModelVersionModel',
          Prediction: '../predictions/predict-service.js#Prediction as PredictionModel',
          Explanation: '../explanations/explain-service.js#Explanation as ExplanationModel',
          LicensePlan: './prisma/client.js#LicensePlan as LicensePlanModel',
          Contract: './prisma/client.js#Contract as ContractModel',
          AuditEvent: './prisma/client.js#AuditEvent as AuditEventModel',
          Dataset: './prisma/client.js#Dataset as DatasetModel',
          Evaluation: './prisma/client.js#Evaluation as EvaluationModel',
          Comparison: '../evaluation/evaluations-service.js#ComparisonWithRuns as ComparisonModel',
          WebhookEndpoint: '../webhooks/webhooks-service.js#WebhookEndpointView as WebhookEndpointModel',
          WebhookDelivery: '../webhooks/webhooks-service.js#WebhookDeliveryView as WebhookDeliveryModel',
          PendingUpgrade: '../licensing/upgrades-service.js#PendingUpgrade as PendingUpgradeModel',
          BatchPrediction: './prisma/client.js#BatchPrediction as BatchPredictionModel',
          CertificateVerification:
            '../licensing/certificates.js#CertificateVerification as CertificateVerificationModel',
          AsyncPrediction: '../predictions/async-predictions-service.js#AsyncPrediction as AsyncPredictionModel',
        },
      },
    },
    // The client's operations as typed documents: results and variables as they travel in JSON (dates as strings).
    'src/generated/client.ts': {
      documents: 'src/client/operations/*.graphql',
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
    // The web console's documents (graphql(`…`) in web/src) as typed strings: no GraphQL runtime in the bundle.
    'web/src/gql/': {
      preset: 'client',
      documents: ['web/src/**/*.{ts,tsx}', '!web/src/gql/**'],
      presetConfig: { fragmentMasking: false },
      config: {
        documentMode: 'string',
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
