// Prometheus metrics. One registry per running server (tests run several in one process).
import type { ApolloServerPlugin } from '@apollo/server';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { Context } from './context.js';

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mm_' });
  return registry;
}

/**
 * Counts GraphQL requests, latency and errors. Operations are labelled by type and root field
 * (`mutation:signUp`), which the schema bounds, never by the client-chosen operation name.
 */
export function graphqlMetricsPlugin(registry: Registry): ApolloServerPlugin<Context> {
  const requests = new Counter({
    name: 'mm_graphql_requests_total',
    help: 'GraphQL operations by operation and outcome',
    labelNames: ['operation', 'outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'mm_graphql_request_duration_seconds',
    help: 'GraphQL operation latency',
    labelNames: ['operation'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'mm_graphql_errors_total',
    help: 'GraphQL errors by extensions.code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  return {
    async requestDidStart() {
      const startedAt = performance.now();
      let operation = 'unresolved';
      let failed = false;
      return {
        async didResolveOperation({ operation: op }) {
          if (!op) return;
          const root = op.selectionSet.selections.find((s) => s.kind === 'Field');
          operation = `${op.operation}:${root && root.kind === 'Field' ? root.name.value : 'unknown'}`;
        },
        async didEncounterErrors({ errors: list }) {
          failed = true;
          for (const error of list) errors.inc({ code: String(error.extensions?.code ?? 'INTERNAL_SERVER_ERROR') });
        },
        async willSendResponse() {
          // Observed directly: the timer `startTimer` returns merges label objects on every call.
          duration.observe({ operation }, (performance.now() - startedAt) / 1000);
          requests.inc({ operation, outcome: failed ? 'error' : 'ok' });
        },
      };
    },
  };
}
