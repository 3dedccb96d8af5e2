import type { ContractAction, ContractTerms, Resolvers } from '../generated/graphql.js';
import { nextMonthStart } from '../metering/metering-service.js';
import { passesAuthRule } from '../server/schema.js';
import { acceptRefusal, allowedTransitions, mostRelevantContract, visibleStatus } from './contracts-service.js';
import { canPredictAny } from './predict-authorizer.js';
import { EXPLANATION_TERMS_BEFORE_EXPLANATIONS, UPGRADE_TERMS_BEFORE_UPGRADES } from './terms.js';
import { mutationInput, requiredInputField } from '../server/mutation-inputs.js';

export const licensingResolvers: Resolvers = {
  Query: {
    myContracts: (_parent, _args, ctx) => ctx.services.contracts.mine(ctx.actor),
    contractsForModel: (_parent, { model }, ctx) => ctx.services.contracts.forModel(ctx.actor, model),
    contracts: (_parent, { status }, ctx) => ctx.services.contracts.all(ctx.actor, status),
    myContractsConnection: (_parent, { filter, first, after }, ctx) =>
      ctx.services.contracts.mineConnection(ctx.actor, filter, first ?? 20, after),
    contractsForModelConnection: (_parent, { model, filter, first, after }, ctx) =>
      ctx.services.contracts.forModelConnection(ctx.actor, model, filter, first ?? 20, after),
    contractsConnection: (_parent, { filter, first, after }, ctx) =>
      ctx.services.contracts.allConnection(ctx.actor, filter, first ?? 20, after),
    verifyLicenseCertificate: (_parent, { token }, ctx) => ctx.services.certificates.verify(token),
  },
  Mutation: {
    createLicensePlan: (_parent, { input }, ctx) => {
      const { model, ...plan } = input;
      return ctx.services.plans.create(ctx.actor, model, plan);
    },
    updateLicensePlan: (_parent, { input }, ctx) => {
      const { id: _id, ...changes } = input;
      return ctx.services.plans.update(ctx.actor, requiredInputField(input, 'id'), changes);
    },
    retireLicensePlan: (_parent, args, ctx) => ctx.services.plans.retire(ctx.actor, mutationInput(args).id),
    acceptLicense: (_parent, args, ctx) => {
      const { planId, pin } = mutationInput(args);
      return ctx.services.contracts.accept(ctx.actor, planId, pin);
    },
    approveContract: (_parent, args, ctx) =>
      ctx.services.contracts.transition(ctx.actor, mutationInput(args).id, 'approve'),
    rejectContract: (_parent, args, ctx) => {
      const { id, reason } = mutationInput(args);
      return ctx.services.contracts.transition(ctx.actor, id, 'reject', reason);
    },
    suspendContract: (_parent, args, ctx) => {
      const { id, reason } = mutationInput(args);
      return ctx.services.contracts.transition(ctx.actor, id, 'suspend', reason);
    },
    resumeContract: (_parent, args, ctx) =>
      ctx.services.contracts.transition(ctx.actor, mutationInput(args).id, 'resume'),
    revokeContract: (_parent, args, ctx) => {
      const { id, reason } = mutationInput(args);
      return ctx.services.contracts.transition(ctx.actor, id, 'revoke', reason);
    },
    cancelContract: (_parent, args, ctx) =>
      ctx.services.contracts.transition(ctx.actor, mutationInput(args).id, 'cancel'),
    acceptVersionUpgrade: (_parent, args, ctx) => {
      const { contract, version } = mutationInput(args);
      return ctx.services.upgrades.accept(ctx.actor, contract, version);
    },
    declineVersionUpgrade: (_parent, args, ctx) =>
      ctx.services.upgrades.decline(ctx.actor, mutationInput(args).contract),
  },
  // The viewer… fields answer by the rules (and @auth checks) of the calls they announce: the console copies no policy.
  Model: {
    plans: (model, _args, ctx) => ctx.services.plans.listForModel(ctx.actor, model),
    plansConnection: (model, { status, first, after }, ctx) =>
      ctx.loaders.plansPage(model, status, first ?? 20, after ?? null),
    viewerContract: async (model, _args, ctx) =>
      mostRelevantContract(await ctx.loaders.viewerContractsByModelId.load(model.id)),
    viewerCanPredict: async (model, _args, ctx, info) => {
      const principal = ctx.actor.principal;
      if (!passesAuthRule(principal, info.schema, 'Mutation', 'predict')) return false;
      const [servingVersions, contracts] = await Promise.all([
        ctx.loaders.servingVersionsByModelId.load(model.id),
        ctx.loaders.viewerContractsByModelId.load(model.id),
      ]);
      return canPredictAny(principal, model, servingVersions, contracts);
    },
  },
  LicensePlan: {
    viewerCanAccept: async (plan, _args, ctx, info) => {
      const principal = ctx.actor.principal;
      if (!passesAuthRule(principal, info.schema, 'Mutation', 'acceptLicense')) return false;
      const [model, contracts] = await Promise.all([
        ctx.loaders.modelById.load(plan.modelId),
        ctx.loaders.viewerContractsByModelId.load(plan.modelId),
      ]);
      const underPlan = contracts.filter((contract) => contract.planId === plan.id);
      return model !== null && acceptRefusal(principal, plan, model, underPlan) === null;
    },
    // A plan is reached only through its visible model or a Contract.plan that checked it.
    model: (plan, _args, ctx) => ctx.loaders.requireVisibleModel(plan.modelId),
    pricePerPrediction: (plan) => plan.pricePerPrediction.toString(),
    pricePerExplanation: (plan) => plan.pricePerExplanation.toString(),
  },
  Contract: {
    viewerActions: async (contract, _args, ctx, info) => {
      const principal = ctx.actor.principal;
      const model = await ctx.loaders.modelById.load(contract.modelId);
      if (!model) return [];
      return allowedTransitions(principal, contract, model)
        .filter((name) => passesAuthRule(principal, info.schema, 'Mutation', `${name}Contract`))
        .map((name) => name.toUpperCase() as ContractAction);
    },
    // Null once the model stops being visible to the caller (made PRIVATE): a contract is no way around that.
    plan: (contract, _args, ctx) => ctx.loaders.visiblePlanById(contract.planId),
    model: (contract, _args, ctx) => ctx.loaders.visibleModelById(contract.modelId),
    consumer: async (contract, _args, ctx) => (await ctx.loaders.userById.load(contract.consumerId))!,
    status: (contract) => visibleStatus(contract),
    // Terms frozen before plans offered explanations do not allow them; those before upgrade policies followed.
    terms: (contract) => ({
      ...EXPLANATION_TERMS_BEFORE_EXPLANATIONS,
      ...UPGRADE_TERMS_BEFORE_UPGRADES,
      ...(contract.terms as unknown as ContractTerms),
    }),
    // Like Contract.model: nothing about the versions of a model the caller may no longer see.
    pinnedVersion: async (contract, _args, ctx) =>
      contract.pinnedVersionId && (await ctx.loaders.visibleModelById(contract.modelId))
        ? ctx.services.models.versionById(contract.pinnedVersionId)
        : null,
    pendingUpgrade: async (contract, _args, ctx) =>
      (await ctx.loaders.visibleModelById(contract.modelId)) ? ctx.services.upgrades.pendingUpgrade(contract) : null,
    periodResetsAt: (contract) => (contract.period === 'MONTH' ? nextMonthStart(contract.periodStart) : null),
    predictionsUsed: (contract) =>
      // A monthly count from an earlier month is already spent history: the new month starts at 0.
      contract.period === 'MONTH' && nextMonthStart(contract.periodStart) <= new Date() ? 0 : contract.predictionsUsed,
    certificate: async (contract, _args, ctx) => {
      // Like Contract.model: nothing about a model the caller may no longer see.
      const model = await ctx.loaders.visibleModelById(contract.modelId);
      return model ? ctx.services.certificates.issue(contract, model) : null;
    },
  },
};
