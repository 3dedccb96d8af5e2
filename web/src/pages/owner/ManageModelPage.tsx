// /owner/models/:slug: everything an owner does with one model: its description, publishing versions from files,
// the versions' life cycle and watermarks, plans, contracts, and usage with revenue.
import { Link, useParams } from 'react-router-dom';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { ModelContractsTable } from '../../components/owner/ModelContractsTable';
import { ModelDetailsForm } from '../../components/owner/ModelDetailsForm';
import { TASK_NAMES } from '../../models/tasks';
import { RequireRole } from '../../components/RequireRole';
import { PlansEditor } from '../../components/owner/PlansEditor';
import { PublishVersionForm } from '../../components/owner/PublishVersionForm';
import { VersionsTable } from '../../components/owner/VersionsTable';
import { UsagePanel } from '../../components/UsagePanel';
import { graphql } from '../../gql';

const ManagedModel = graphql(`
  query ManagedModel($slug: String!) {
    model(slug: $slug) {
      ...ModelDescription
      viewerCanManage
    }
  }
`);

export function ManageModelPage() {
  const { slug = '' } = useParams();
  return (
    <RequireRole role="OWNER" title="Manage a model">
      {() => <ManagedModelSections slug={slug} />}
    </RequireRole>
  );
}

function ManagedModelSections({ slug }: { slug: string }) {
  const { data, error, isPending } = useGql(ManagedModel, { slug });
  if (isPending) return <p>Loading the model…</p>;
  const model = data?.model;
  if (error || !model || !model.viewerCanManage) {
    return (
      <>
        <h1>Manage a model</h1>
        {error ? (
          <ErrorMessage error={error} />
        ) : (
          <p role="alert" className="error">
            There is no model {slug} that you manage.
          </p>
        )}
      </>
    );
  }
  return (
    <>
      <h1>{model.name}</h1>
      <p className="muted">
        <code>{model.slug}</code> · {TASK_NAMES[model.task]} · {model.visibility === 'PUBLIC' ? 'Public' : 'Private'} ·{' '}
        <Link to={`/models/${model.slug}`}>Marketplace page</Link>
      </p>
      <PublishVersionForm slug={model.slug} />
      <VersionsTable slug={model.slug} />
      <PlansEditor slug={model.slug} />
      <section aria-labelledby="contracts-title">
        <h2 id="contracts-title">Contracts</h2>
        <ModelContractsTable slug={model.slug} caption="Contracts for this model" />
      </section>
      <UsagePanel scope={{ model: model.slug }} title="Usage and revenue" amountLabel="Revenue" />
      <ModelDetailsForm
        slug={model.slug}
        initial={{
          name: model.name,
          description: model.description,
          tags: model.tags.join(', '),
          visibility: model.visibility,
          card: {
            intendedUse: model.card.intendedUse ?? '',
            trainingData: model.card.trainingData ?? '',
            limitations: model.card.limitations ?? '',
            licenseSummary: model.card.licenseSummary ?? '',
          },
        }}
      />
    </>
  );
}
