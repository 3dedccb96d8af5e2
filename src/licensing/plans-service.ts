// Licence plans: what an owner offers for a model.
import type { Actor } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import type { Prisma } from '../db/database.js';
import type { LicensePlan, Model, Prisma as P, QuotaPeriod, UpgradePolicy } from '../generated/prisma/client.js';
import { assertCanManage, canManage, canView } from '../models/model-policy.js';
import { BadUserInputError, NotFoundError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import { cleanText } from '../server/text.js';
import { normaliseCurrency, normalisePrice, normaliseRange, positiveOrNull } from './terms.js';

export interface PlanInput {
  name?: string | null;
  description?: string | null;
  versions?: string | null;
  pricePerPrediction?: string | null;
  currency?: string | null;
  predictionQuota?: number | null;
  period?: QuotaPeriod | null;
  rateLimitPerMinute?: number | null;
  durationDays?: number | null;
  commercialUse?: boolean | null;
  downloadAllowed?: boolean | null;
  requiresApproval?: boolean | null;
  explanationsAllowed?: boolean | null;
  pricePerExplanation?: string | null;
  explanationQuotaUnits?: number | null;
  upgradePolicy?: UpgradePolicy | null;
  upgradeGraceDays?: number | null;
}

/** Quota units one explained instance may be set to take. */
export const MAX_EXPLANATION_QUOTA_UNITS = 1_000_000;

/** The longest grace an owner may give before an offered upgrade applies by itself. */
export const MAX_UPGRADE_GRACE_DAYS = 90;

/**
 * The plan's upgrade terms once `input` is applied to `current`: grace days are required with (and only with)
 * FOLLOW_ALIAS_AFTER_GRACE; a policy changed away from it drops them.
 */
function upgradeTerms(
  input: PlanInput,
  current: Pick<LicensePlan, 'upgradePolicy' | 'upgradeGraceDays'>,
  prefix: string,
): Pick<LicensePlan, 'upgradePolicy' | 'upgradeGraceDays'> {
  const upgradePolicy = input.upgradePolicy ?? current.upgradePolicy;
  const grace = upgradePolicy === 'FOLLOW_ALIAS_AFTER_GRACE';
  const given = input.upgradeGraceDays === undefined ? current.upgradeGraceDays : input.upgradeGraceDays;
  const field = `${prefix}.upgradeGraceDays`;
  if (!grace) {
    if (input.upgradeGraceDays != null)
      throw new BadUserInputError('upgradeGraceDays applies only to FOLLOW_ALIAS_AFTER_GRACE', field);
    return { upgradePolicy, upgradeGraceDays: null };
  }
  if (given == null) throw new BadUserInputError('FOLLOW_ALIAS_AFTER_GRACE needs upgradeGraceDays', field);
  return { upgradePolicy, upgradeGraceDays: positiveOrNull(given, field, MAX_UPGRADE_GRACE_DAYS) };
}

/** Validated plan fields; `undefined` leaves a field as it is (updates), `null` clears a nullable limit. */
function planData(input: PlanInput, prefix: string): P.LicensePlanUncheckedUpdateInput {
  const field = (name: string) => `${prefix}.${name}`;
  const has = (key: keyof PlanInput) => input[key] !== undefined;
  const data: P.LicensePlanUncheckedUpdateInput = {};
  if (input.name != null) data.name = cleanText(input.name, field('name'), { max: 100 });
  if (input.description != null)
    data.description = cleanText(input.description, field('description'), { max: 5000, min: 0 });
  if (input.versions != null) data.versions = normaliseRange(input.versions, field('versions'));
  if (input.pricePerPrediction != null)
    data.pricePerPrediction = normalisePrice(input.pricePerPrediction, field('pricePerPrediction'));
  if (input.currency != null) data.currency = normaliseCurrency(input.currency, field('currency'));
  if (has('predictionQuota')) data.predictionQuota = positiveOrNull(input.predictionQuota, field('predictionQuota'));
  if (input.period != null) data.period = input.period;
  if (has('rateLimitPerMinute'))
    data.rateLimitPerMinute = positiveOrNull(input.rateLimitPerMinute, field('rateLimitPerMinute'), 1_000_000);
  if (has('durationDays')) data.durationDays = positiveOrNull(input.durationDays, field('durationDays'), 36_500);
  if (input.pricePerExplanation != null)
    data.pricePerExplanation = normalisePrice(input.pricePerExplanation, field('pricePerExplanation'));
  if (input.explanationQuotaUnits != null) {
    data.explanationQuotaUnits = positiveOrNull(
      input.explanationQuotaUnits,
      field('explanationQuotaUnits'),
      MAX_EXPLANATION_QUOTA_UNITS,
    )!;
  }
  for (const flag of ['commercialUse', 'downloadAllowed', 'requiresApproval', 'explanationsAllowed'] as const) {
    if (input[flag] != null) data[flag] = input[flag];
  }
  return data;
}

export class PlansService {
  constructor(
    private readonly prisma: Prisma,
    private readonly audit: AuditService,
    private readonly options: { maxActivePlans: number },
  ) {}

  async create(
    actor: Actor,
    modelSlug: string,
    input: PlanInput & { name: string; pricePerPrediction: string; currency: string; period: QuotaPeriod },
  ) {
    const model = await this.prisma.model.findUnique({ where: { slug: modelSlug } });
    assertCanManage(actor.principal, model);
    const data = {
      ...planData({ versions: '*', ...input }, 'input'),
      ...upgradeTerms(input, { upgradePolicy: 'PINNED', upgradeGraceDays: null }, 'input'),
    };
    return this.prisma.$transaction(async (tx) => {
      // Creations on one model take turns (the lock alias moves take), so that the limit holds.
      await tx.$executeRaw`SELECT 1 FROM models WHERE id = ${(model as Model).id}::uuid FOR NO KEY UPDATE`;
      const active = await tx.licensePlan.count({ where: { modelId: (model as Model).id, status: 'ACTIVE' } });
      if (active >= this.options.maxActivePlans)
        throw new BadUserInputError(
          `At most ${this.options.maxActivePlans} active plans per model; retire one first`,
          'input.model',
        );
      const plan = await tx.licensePlan.create({
        data: { ...(data as P.LicensePlanUncheckedCreateInput), modelId: (model as Model).id },
      });
      await this.audit.record(
        actor,
        {
          action: AuditAction.PLAN_CREATED,
          targetType: 'LicensePlan',
          targetId: plan.id,
          details: { model: modelSlug },
        },
        tx,
      );
      return plan;
    });
  }

  async update(actor: Actor, id: string, input: PlanInput): Promise<LicensePlan> {
    const plan = await this.#manageable(actor, id);
    if (plan.status === 'RETIRED') throw new BadUserInputError('A retired plan cannot be changed', 'id');
    const data = planData(input, 'input');
    if (input.upgradePolicy != null || input.upgradeGraceDays !== undefined)
      Object.assign(data, upgradeTerms(input, plan, 'input'));
    return this.prisma.$transaction(async (tx) => {
      const updated = await tx.licensePlan.update({ where: { id }, data: { ...data, revision: { increment: 1 } } });
      await this.audit.record(
        actor,
        {
          action: AuditAction.PLAN_UPDATED,
          targetType: 'LicensePlan',
          targetId: id,
          details: { fields: Object.keys(data), revision: updated.revision },
        },
        tx,
      );
      return updated;
    });
  }

  async retire(actor: Actor, id: string): Promise<LicensePlan> {
    const plan = await this.#manageable(actor, id);
    if (plan.status === 'RETIRED') return plan;
    return this.prisma.$transaction(async (tx) => {
      const retired = await tx.licensePlan.update({ where: { id }, data: { status: 'RETIRED' } });
      await this.audit.record(actor, { action: AuditAction.PLAN_RETIRED, targetType: 'LicensePlan', targetId: id }, tx);
      return retired;
    });
  }

  /** Plans of a model the caller can see; retired ones only for those who manage it. */
  listForModel(actor: Actor, model: Model): Promise<LicensePlan[]> {
    const all = canManage(actor.principal, model);
    return this.prisma.licensePlan.findMany({
      where: { modelId: model.id, ...(all ? {} : { status: 'ACTIVE' }) },
      orderBy: { createdAt: 'asc' },
    });
  }

  /** A plan whose model the caller can see (for accepting it). */
  async findVisible(actor: Actor, id: string): Promise<LicensePlan & { model: Model }> {
    assertUuid(id, 'planId');
    const plan = await this.prisma.licensePlan.findUnique({ where: { id }, include: { model: true } });
    if (!plan || !canView(actor.principal, plan.model)) throw new NotFoundError('Plan');
    return plan;
  }

  async #manageable(actor: Actor, id: string): Promise<LicensePlan> {
    assertUuid(id, 'id');
    const plan = await this.prisma.licensePlan.findUnique({ where: { id }, include: { model: true } });
    if (!plan) throw new NotFoundError('Plan');
    assertCanManage(actor.principal, plan.model);
    return plan;
  }
}
