// The model's plans with their terms; "Accept licence" (or "Request access", when the owner approves each
// contract) only where the API says the viewer may take the plan (viewerCanAccept).
import { Link } from 'react-router-dom';
import { useGql, useGqlMutation, useSession } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import type { ContractStatus } from '../../gql/graphql';
import { quotaWords } from './words';

const PAGE_SIZE = 10;

/** The terms a plan shows wherever it is listed; the owner's editor adds the fields it edits. */
export const LicensePlanTerms = graphql(`
  fragment LicensePlanTerms on LicensePlan {
    id
    name
    description
    versions
    pricePerPrediction
    currency
    predictionQuota
    period
    rateLimitPerMinute
    durationDays
    commercialUse
    downloadAllowed
    requiresApproval
    explanationsAllowed
    pricePerExplanation
    status
  }
`);

const ModelPlans = graphql(`
  query ModelPlans($slug: String!, $first: Int, $after: String) {
    model(slug: $slug) {
      id
      plansConnection(first: $first, after: $after) {
        totalCount
        edges {
          node {
            ...LicensePlanTerms
            viewerCanAccept
          }
        }
        pageInfo {
          ...PagerPageInfo
        }
      }
    }
  }
`);

const AcceptLicense = graphql(`
  mutation AcceptLicense($input: AcceptLicenseInput!) {
    acceptLicense(input: $input) {
      id
      status
    }
  }
`);

function acceptedNotice(status: ContractStatus): string {
  return status === 'PENDING'
    ? 'Your request was sent: the owner will review it, and your licence shows here meanwhile.'
    : 'Licence accepted: you can now try the model and call it with an API key.';
}

export function PlansSection({ slug }: { slug: string }) {
  const { user } = useSession();
  const cursor = useCursor();
  const { data, error } = useGql(ModelPlans, { slug, first: PAGE_SIZE, after: cursor.after });
  const accept = useGqlMutation(AcceptLicense);
  const connection = data?.model?.plansConnection;
  return (
    <section aria-labelledby="plans">
      <h2 id="plans">Plans</h2>
      <ErrorMessage error={error} />
      <ErrorMessage error={accept.error} />
      {accept.data && (
        <p role="status" className="notice">
          {acceptedNotice(accept.data.acceptLicense.status)}
        </p>
      )}
      {!user && (
        <p>
          <Link to={`/login?next=${encodeURIComponent(`/models/${slug}`)}`}>Log in</Link> to take a licence.
        </p>
      )}
      {connection && connection.edges.length === 0 && <p>This model offers no plan yet.</p>}
      <ul className="cards plans">
        {connection?.edges.map(({ node: plan }) => (
          <li key={plan.id} className="card plan">
            <h3>
              {plan.name}
              {plan.status === 'RETIRED' && <span className="version-mark"> RETIRED</span>}
            </h3>
            {plan.description && <p>{plan.description}</p>}
            <dl className="terms">
              <dt>Price</dt>
              <dd>
                {plan.pricePerPrediction} {plan.currency} per prediction
              </dd>
              <dt>Quota</dt>
              <dd>{quotaWords(plan.predictionQuota, plan.period)}</dd>
              <dt>Rate limit</dt>
              <dd>{plan.rateLimitPerMinute ? `${plan.rateLimitPerMinute} calls a minute` : 'None'}</dd>
              <dt>Duration</dt>
              <dd>{plan.durationDays ? `${plan.durationDays} days` : 'No expiry'}</dd>
              <dt>Versions</dt>
              <dd>{plan.versions}</dd>
              <dt>Commercial use</dt>
              <dd>{plan.commercialUse ? 'Allowed' : 'Not allowed'}</dd>
              <dt>Download</dt>
              <dd>{plan.downloadAllowed ? 'Allowed' : 'Not allowed'}</dd>
              <dt>Explanations</dt>
              <dd>
                {plan.explanationsAllowed
                  ? `Allowed, ${plan.pricePerExplanation} ${plan.currency} each`
                  : 'Not included'}
              </dd>
              <dt>Approval</dt>
              <dd>{plan.requiresApproval ? 'The owner approves each licence' : 'Immediate'}</dd>
            </dl>
            {plan.viewerCanAccept && (
              <button
                type="button"
                disabled={accept.isPending}
                onClick={() => accept.mutate({ input: { planId: plan.id } })}
              >
                {plan.requiresApproval ? `Request access: ${plan.name}` : `Accept licence: ${plan.name}`}
              </button>
            )}
          </li>
        ))}
      </ul>
      <Pager pageInfo={connection?.pageInfo} cursor={cursor} label="Plans" />
    </section>
  );
}
