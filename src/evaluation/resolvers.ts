import type {
  EvaluationError as EvaluationErrorType,
  EvaluationReport as EvaluationReportType,
  Resolvers,
} from '../generated/graphql.js';
import type { Evaluation } from '../generated/prisma/client.js';
import type { Disagreement } from './evaluations-service.js';
import { mutationInput } from '../server/mutation-inputs.js';

const progressOf = (evaluation: Evaluation) => ({
  fraction: evaluation.examplesTotal === 0 ? 0 : evaluation.examplesEvaluated / evaluation.examplesTotal,
  examplesEvaluated: evaluation.examplesEvaluated,
  examplesTotal: evaluation.examplesTotal,
});

export const evaluationResolvers: Resolvers = {
  Query: {
    datasets: (_parent, _args, ctx) => ctx.services.datasets.mine(ctx.actor),
    dataset: (_parent, { id }, ctx) => ctx.services.datasets.find(ctx.actor, id),
    evaluation: (_parent, { id }, ctx) => ctx.services.evaluations.find(ctx.actor, id),
    evaluations: (_parent, { model }, ctx) => ctx.services.evaluations.mine(ctx.actor, model),
    comparison: (_parent, { id }, ctx) => ctx.services.evaluations.findComparison(ctx.actor, id),
  },
  Mutation: {
    deleteDataset: (_parent, args, ctx) => ctx.services.datasets.delete(ctx.actor, mutationInput(args).id),
    evaluateModelVersion: (_parent, { input }, ctx) => ctx.services.evaluations.evaluate(ctx.actor, input),
    compareModelVersions: (_parent, { input }, ctx) => ctx.services.evaluations.compare(ctx.actor, input),
    cancelEvaluation: (_parent, args, ctx) => ctx.services.evaluations.cancel(ctx.actor, mutationInput(args).id),
    publishEvaluation: (_parent, args, ctx) => ctx.services.evaluations.publish(ctx.actor, mutationInput(args).id),
  },
  Evaluation: {
    progress: progressOf,
    report: (evaluation) => evaluation.report as EvaluationReportType | null,
    error: (evaluation) => evaluation.error as EvaluationErrorType | null,
    model: (evaluation, _args, ctx) => ctx.loaders.requireVisibleModel(evaluation.modelId),
    version: (evaluation, _args, ctx) => ctx.services.models.versionById(evaluation.versionId),
    // The data set is the uploader's: another reader of the evaluation (an admin) sees it too, anyone else null.
    dataset: (evaluation, _args, ctx) =>
      evaluation.datasetId === null
        ? null
        : ctx.services.datasets.find(ctx.actor, evaluation.datasetId).catch(() => null),
  },
  Comparison: {
    status: (comparison) => comparison.a.status,
    progress: (comparison) => progressOf(comparison.a),
    error: (comparison) => (comparison.a.error ?? comparison.b.error) as EvaluationErrorType | null,
    finishedAt: (comparison) => comparison.a.finishedAt,
    disagreement: (comparison) => comparison.disagreement as Disagreement | null,
  },
  ModelVersion: {
    verifiedMetrics: (version, _args, ctx) => ctx.loaders.verifiedMetrics.load(version.id),
  },
};
