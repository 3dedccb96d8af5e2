// A model's licence plans with every term: offer a new plan, change one (contracts made from then on take the new
// terms), retire one (it takes no new contracts).
import { useId, useState, type FormEvent } from 'react';
import { useGql, useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import type { OwnerModelPlansQuery, QuotaPeriod, UpgradePolicy } from '../../gql/graphql';
import { quotaWords } from '../../pages/model/words';
import { ErrorMessage } from '../ErrorMessage';
import { Pager, useCursor } from '../Pager';

const OwnerModelPlans = graphql(`
  query OwnerModelPlans($slug: String!, $after: String) {
    model(slug: $slug) {
      id
      plansConnection(first: 20, after: $after) {
        totalCount
        edges {
          node {
            ...LicensePlanTerms
            explanationQuotaUnits
            upgradePolicy
            upgradeGraceDays
            revision
          }
        }
        pageInfo {
          ...PagerPageInfo
        }
      }
    }
  }
`);

const CreatePlan = graphql(`
  mutation CreateOwnerPlan($input: CreateLicensePlanInput!) {
    createLicensePlan(input: $input) {
      id
      name
    }
  }
`);

const UpdatePlan = graphql(`
  mutation UpdateOwnerPlan($input: UpdateLicensePlanInput!) {
    updateLicensePlan(input: $input) {
      id
      name
      revision
    }
  }
`);

const RetirePlan = graphql(`
  mutation RetireOwnerPlan($input: RetireLicensePlanInput!) {
    retireLicensePlan(input: $input) {
      id
      status
    }
  }
`);

type Plan = NonNullable<OwnerModelPlansQuery['model']>['plansConnection']['edges'][number]['node'];

/** The terms as typed: numbers as strings, empty meaning "none" (unlimited quota, no expiry…). */
interface PlanDraft {
  name: string;
  description: string;
  versions: string;
  pricePerPrediction: string;
  currency: string;
  predictionQuota: string;
  period: QuotaPeriod;
  rateLimitPerMinute: string;
  durationDays: string;
  commercialUse: boolean;
  downloadAllowed: boolean;
  requiresApproval: boolean;
  explanationsAllowed: boolean;
  pricePerExplanation: string;
  explanationQuotaUnits: string;
  upgradePolicy: UpgradePolicy;
  upgradeGraceDays: string;
}

const NEW_PLAN: PlanDraft = {
  name: '',
  description: '',
  versions: '*',
  pricePerPrediction: '0.001',
  currency: 'EUR',
  predictionQuota: '',
  period: 'MONTH',
  rateLimitPerMinute: '',
  durationDays: '',
  commercialUse: true,
  downloadAllowed: false,
  requiresApproval: false,
  explanationsAllowed: false,
  pricePerExplanation: '0',
  explanationQuotaUnits: '10',
  upgradePolicy: 'PINNED',
  upgradeGraceDays: '',
};

const countAsText = (value: number | null | undefined) => (value == null ? '' : String(value));
const optionalCount = (value: string) => (value.trim() === '' ? null : Number(value));

/** Only the terms (a plan's id, status and revision are not inputs). */
function draftOf(plan: Plan): PlanDraft {
  return {
    name: plan.name,
    description: plan.description,
    versions: plan.versions,
    pricePerPrediction: plan.pricePerPrediction,
    currency: plan.currency,
    period: plan.period,
    commercialUse: plan.commercialUse,
    downloadAllowed: plan.downloadAllowed,
    requiresApproval: plan.requiresApproval,
    explanationsAllowed: plan.explanationsAllowed,
    pricePerExplanation: plan.pricePerExplanation,
    upgradePolicy: plan.upgradePolicy,
    predictionQuota: countAsText(plan.predictionQuota),
    rateLimitPerMinute: countAsText(plan.rateLimitPerMinute),
    durationDays: countAsText(plan.durationDays),
    explanationQuotaUnits: countAsText(plan.explanationQuotaUnits),
    upgradeGraceDays: countAsText(plan.upgradeGraceDays),
  };
}

/** The terms as both plan inputs take them. */
function termsOf(draft: PlanDraft) {
  return {
    ...draft,
    name: draft.name.trim(),
    currency: draft.currency.trim().toUpperCase(),
    predictionQuota: optionalCount(draft.predictionQuota),
    rateLimitPerMinute: optionalCount(draft.rateLimitPerMinute),
    durationDays: optionalCount(draft.durationDays),
    explanationQuotaUnits: optionalCount(draft.explanationQuotaUnits) ?? 10,
    upgradeGraceDays: draft.upgradePolicy === 'FOLLOW_ALIAS_AFTER_GRACE' ? optionalCount(draft.upgradeGraceDays) : null,
  };
}

const POLICIES: Record<UpgradePolicy, string> = {
  PINNED: 'Pinned: a new version only when the consumer accepts it',
  FOLLOW_ALIAS: 'Follow the alias at once',
  FOLLOW_ALIAS_AFTER_GRACE: 'Follow the alias after a grace period',
};

function PlanForm({
  initial,
  submitLabel,
  pending,
  error,
  onSubmit,
  onCancel,
}: {
  initial: PlanDraft;
  submitLabel: string;
  pending: boolean;
  error: unknown;
  onSubmit: (draft: PlanDraft) => void;
  onCancel?: () => void;
}) {
  const [draft, setDraft] = useState(initial);
  const id = useId();
  const set = <K extends keyof PlanDraft>(key: K, value: PlanDraft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const field = (key: keyof PlanDraft, label: string, props: Record<string, unknown> = {}) => (
    <div>
      <label htmlFor={`${id}-${key}`}>{label}</label>
      <input
        id={`${id}-${key}`}
        value={draft[key] as string}
        onChange={(event) => set(key, event.target.value)}
        {...props}
      />
    </div>
  );
  const check = (key: keyof PlanDraft, label: string) => (
    <label className="check">
      <input type="checkbox" checked={draft[key] as boolean} onChange={(event) => set(key, event.target.checked)} />{' '}
      {label}
    </label>
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit(draft);
  };
  const counter = { type: 'number', min: 1, max: 1_000_000_000, step: 1 };
  const price = { required: true, inputMode: 'decimal', pattern: '\\d{1,12}(\\.\\d{1,8})?', maxLength: 21 };
  return (
    <form onSubmit={submit} className="plan-form">
      <div className="form-grid">
        {field('name', 'Plan name', { required: true, maxLength: 100 })}
        {field('versions', 'Versions covered (semver range, * for all)', { required: true, maxLength: 100 })}
        {field('pricePerPrediction', 'Price per prediction', price)}
        {field('currency', 'Currency (ISO 4217)', { required: true, pattern: '[A-Za-z]{3}', maxLength: 3 })}
        {field('predictionQuota', 'Prediction quota (empty: unlimited)', counter)}
        <div>
          <label htmlFor={`${id}-period`}>Quota period</label>
          <select
            id={`${id}-period`}
            value={draft.period}
            onChange={(event) => set('period', event.target.value as QuotaPeriod)}
          >
            <option value="MONTH">Per month</option>
            <option value="TOTAL">Over the contract's life</option>
          </select>
        </div>
        {field('rateLimitPerMinute', 'Rate limit per minute (empty: none)', counter)}
        {field('durationDays', 'Duration in days (empty: no expiry)', counter)}
        {field('pricePerExplanation', 'Price per explanation', price)}
        {field('explanationQuotaUnits', 'Quota units per explanation', { ...counter, max: 1_000_000, required: true })}
        <div>
          <label htmlFor={`${id}-upgradePolicy`}>Upgrade policy</label>
          <select
            id={`${id}-upgradePolicy`}
            value={draft.upgradePolicy}
            onChange={(event) => set('upgradePolicy', event.target.value as UpgradePolicy)}
          >
            {(Object.keys(POLICIES) as UpgradePolicy[]).map((policy) => (
              <option key={policy} value={policy}>
                {POLICIES[policy]}
              </option>
            ))}
          </select>
        </div>
        {draft.upgradePolicy === 'FOLLOW_ALIAS_AFTER_GRACE' &&
          field('upgradeGraceDays', 'Grace days (1 to 90)', { type: 'number', min: 1, max: 90, required: true })}
      </div>
      <label htmlFor={`${id}-description`}>Description</label>
      <textarea
        id={`${id}-description`}
        rows={2}
        maxLength={5000}
        value={draft.description}
        onChange={(event) => set('description', event.target.value)}
      />
      <fieldset>
        <legend>Rights</legend>
        {check('commercialUse', 'Commercial use')}
        {check('downloadAllowed', 'Download of the weights (a fingerprinted copy)')}
        {check('requiresApproval', 'Contracts wait for my approval')}
        {check('explanationsAllowed', 'Explanations allowed')}
      </fieldset>
      <ErrorMessage error={error} />
      <button type="submit" disabled={pending}>
        {pending ? 'Saving…' : submitLabel}
      </button>{' '}
      {onCancel && (
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      )}
    </form>
  );
}

export function PlansEditor({ slug }: { slug: string }) {
  const cursor = useCursor();
  const { data, error, isPending } = useGql(OwnerModelPlans, { slug, after: cursor.after });
  const create = useGqlMutation(CreatePlan);
  const update = useGqlMutation(UpdatePlan);
  const retire = useGqlMutation(RetirePlan);
  const [editing, setEditing] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [notice, setNotice] = useState('');
  const plans = data?.model?.plansConnection;

  return (
    <section aria-labelledby="plans-title">
      <h2 id="plans-title">Plans</h2>
      <ErrorMessage error={error ?? retire.error} />
      {isPending && <p>Loading plans…</p>}
      {plans && plans.totalCount === 0 && <p>No plans yet: consumers cannot licence this model until you offer one.</p>}
      {plans && plans.edges.length > 0 && (
        <table>
          <caption className="visually-hidden">Plans of this model</caption>
          <thead>
            <tr>
              <th scope="col">Plan</th>
              <th scope="col">Price</th>
              <th scope="col">Quota</th>
              <th scope="col">Terms</th>
              <th scope="col">Status</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {plans.edges.map(({ node: plan }) => (
              <tr key={plan.id}>
                <td>
                  {plan.name}{' '}
                  <span className="muted">
                    (revision {plan.revision}, versions {plan.versions})
                  </span>
                </td>
                <td>
                  {plan.pricePerPrediction} {plan.currency} per prediction
                </td>
                <td>{quotaWords(plan.predictionQuota, plan.period)}</td>
                <td>
                  {[
                    plan.commercialUse && 'commercial use',
                    plan.downloadAllowed && 'download',
                    plan.requiresApproval && 'approval required',
                    plan.explanationsAllowed && `explanations at ${plan.pricePerExplanation} ${plan.currency}`,
                    plan.rateLimitPerMinute != null && `${plan.rateLimitPerMinute}/min`,
                    plan.durationDays != null && `${plan.durationDays} days`,
                  ]
                    .filter(Boolean)
                    .join(', ') || 'none'}
                </td>
                <td>{plan.status === 'ACTIVE' ? 'Active' : 'Retired'}</td>
                <td>
                  {plan.status === 'ACTIVE' && (
                    <>
                      <button
                        type="button"
                        className="secondary"
                        aria-label={`Edit plan ${plan.name}`}
                        onClick={() => setEditing(plan.id)}
                      >
                        Edit
                      </button>{' '}
                      <button
                        type="button"
                        className="danger"
                        aria-label={`Retire plan ${plan.name}`}
                        disabled={retire.isPending}
                        onClick={() =>
                          retire.mutate(
                            { input: { id: plan.id } },
                            { onSuccess: () => setNotice(`Plan ${plan.name} retired.`) },
                          )
                        }
                      >
                        Retire
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pageInfo={plans?.pageInfo} cursor={cursor} label="Plans" />
      {plans?.edges
        .filter(({ node }) => node.id === editing)
        .map(({ node: plan }) => (
          <div key={plan.id} className="card">
            <h3>Edit plan {plan.name}</h3>
            <PlanForm
              initial={draftOf(plan)}
              submitLabel="Save plan"
              pending={update.isPending}
              error={update.error}
              onCancel={() => setEditing(null)}
              onSubmit={(draft) =>
                update.mutate(
                  { input: { id: plan.id, ...termsOf(draft) } },
                  {
                    onSuccess: ({ updateLicensePlan }) => {
                      setEditing(null);
                      setNotice(`Plan ${updateLicensePlan.name} saved (revision ${updateLicensePlan.revision}).`);
                    },
                  },
                )
              }
            />
          </div>
        ))}
      {creating ? (
        <div className="card">
          <h3>New plan</h3>
          <PlanForm
            initial={NEW_PLAN}
            submitLabel="Create plan"
            pending={create.isPending}
            error={create.error}
            onCancel={() => setCreating(false)}
            onSubmit={(draft) =>
              create.mutate(
                { input: { model: slug, ...termsOf(draft) } },
                {
                  onSuccess: ({ createLicensePlan }) => {
                    setCreating(false);
                    setNotice(`Plan ${createLicensePlan.name} created.`);
                  },
                },
              )
            }
          />
        </div>
      ) : (
        <button type="button" onClick={() => setCreating(true)}>
          New plan
        </button>
      )}
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
    </section>
  );
}
