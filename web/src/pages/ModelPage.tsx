// A model's page: its card (markdown, rendered safely), the latest version's metrics, "Try it" when the API
// says the viewer may predict, its versions and its plans. What the viewer may do comes from the capability
// fields (viewerCanPredict, viewerCanAccept, viewerContract): the page copies no policy.
import { Link, useParams } from 'react-router-dom';
import { useGql } from '../api/hooks';
import { ErrorMessage } from '../components/ErrorMessage';
import { Markdown } from '../components/Markdown';
import { TagLinks } from '../components/TagLinks';
import { graphql } from '../gql';
import { TASK_NAMES } from '../models/tasks';
import { MetricsSection } from './model/MetricsSection';
import { PlansSection } from './model/PlansSection';
import { TryIt } from './model/TryIt';
import { VersionsSection } from './model/VersionsSection';
import { CONTRACT_STATUS_WORDS } from './model/words';

/** What describes a model, as its page shows it and its owner edits it (ManageModelPage). */
export const ModelDescription = graphql(`
  fragment ModelDescription on Model {
    id
    slug
    name
    description
    task
    tags
    visibility
    card {
      intendedUse
      trainingData
      limitations
      licenseSummary
    }
  }
`);

const ModelPageQuery = graphql(`
  query ModelPage($slug: String!) {
    model(slug: $slug) {
      ...ModelDescription
      owner {
        id
        displayName
      }
      viewerCanManage
      viewerCanPredict
      viewerContract {
        id
        status
        statusReason
        predictionsUsed
        predictionQuota
        periodResetsAt
        expiresAt
        terms {
          planName
        }
        pinnedVersion {
          version
        }
      }
      latest: version(version: "latest") {
        ...VersionMetrics
        derivedFrom {
          ...VersionMetrics
        }
      }
    }
  }
`);

const CARD_SECTIONS = [
  ['intendedUse', 'Intended use'],
  ['trainingData', 'Training data'],
  ['limitations', 'Limitations'],
  ['licenseSummary', 'Licence summary'],
] as const;

export function ModelPage() {
  const { slug = '' } = useParams();
  const { data, error, isPending } = useGql(ModelPageQuery, { slug });
  if (isPending) return <p>Loading the model…</p>;
  if (error) return <ErrorMessage error={error} />;
  const model = data?.model;
  if (!model) {
    return (
      <>
        <h1>No such model</h1>
        <p>
          There is no model “{slug}”, or it is not visible to you. <Link to="/">Back to the marketplace</Link>
        </p>
      </>
    );
  }
  const contract = model.viewerContract;
  // A licensee is served the version its contract is pinned to; everyone else the latest.
  const tryVersion = (contract?.status === 'ACTIVE' && contract.pinnedVersion) || model.latest;
  return (
    <article className="model-page">
      <header>
        <h1>{model.name}</h1>
        <p className="muted">
          {TASK_NAMES[model.task]} · by{' '}
          <Link to={`/?owner=${encodeURIComponent(model.owner.id)}`}>{model.owner.displayName}</Link>
          {model.latest ? ` · latest v${model.latest.version}` : ' · no version published yet'}
          {model.visibility === 'PRIVATE' && ' · private'}
        </p>
        <TagLinks tags={model.tags} />
        {model.viewerCanManage && <Link to={`/owner/models/${model.slug}`}>Manage this model</Link>}
      </header>

      {contract && (
        <section aria-labelledby="your-contract" className="card viewer-contract">
          <h2 id="your-contract">Your licence</h2>
          <p>
            <strong>{CONTRACT_STATUS_WORDS[contract.status]}</strong> under the plan “{contract.terms.planName}”
            {contract.statusReason && ` — ${contract.statusReason}`}
          </p>
          {contract.status === 'ACTIVE' && (
            <p>
              {contract.predictionQuota === null || contract.predictionQuota === undefined
                ? `${contract.predictionsUsed} units used (no quota)`
                : `${contract.predictionsUsed} of ${contract.predictionQuota} units used`}
              {contract.periodResetsAt && `, resets ${new Date(contract.periodResetsAt).toLocaleDateString()}`}
              {contract.expiresAt && `; expires ${new Date(contract.expiresAt).toLocaleDateString()}`}.{' '}
              <Link to="/contracts">Your contracts</Link>
            </p>
          )}
        </section>
      )}

      <section aria-labelledby="about">
        <h2 id="about">About</h2>
        <Markdown source={model.description} />
        {CARD_SECTIONS.map(([field, title]) =>
          model.card[field] ? (
            <section key={field} aria-label={title}>
              <h3>{title}</h3>
              <Markdown source={model.card[field]} />
            </section>
          ) : null,
        )}
      </section>

      {model.viewerCanPredict && tryVersion && <TryIt slug={model.slug} version={tryVersion.version} />}

      {model.latest && <MetricsSection shown={model.latest} />}

      <VersionsSection slug={model.slug} />
      <PlansSection slug={model.slug} />
    </article>
  );
}
