// /owner/approvals: contracts waiting for the owner's approval, across the owner's models. The API has no query
// of pending contracts across models for an owner, so each model (one page of 100) asks for its own.
import { Link } from 'react-router-dom';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { ModelContractsTable } from '../../components/owner/ModelContractsTable';
import { RequireRole } from '../../components/RequireRole';
import { graphql } from '../../gql';

const OwnersModels = graphql(`
  query OwnersModelsForApprovals($owner: ID!) {
    models(filter: { owner: $owner }, first: 100) {
      edges {
        node {
          id
          slug
          name
        }
      }
    }
  }
`);

export function ApprovalsPage() {
  return (
    <RequireRole role="OWNER" title="Approvals">
      {(user) => <PendingContracts owner={user.id} />}
    </RequireRole>
  );
}

function PendingContracts({ owner }: { owner: string }) {
  const { data, error, isPending } = useGql(OwnersModels, { owner });
  return (
    <>
      <h1>Approvals</h1>
      <p className="muted">
        Contracts under plans that require your approval wait here until you approve or reject them.
      </p>
      <ErrorMessage error={error} />
      {isPending && <p>Loading your models…</p>}
      {data?.models.edges.length === 0 && <p>You have no models yet.</p>}
      {data?.models.edges.map(({ node: model }) => (
        <section key={model.id} aria-labelledby={`approvals-${model.id}`}>
          <h2 id={`approvals-${model.id}`}>
            <Link to={`/owner/models/${model.slug}`}>{model.name}</Link>
          </h2>
          <ModelContractsTable
            slug={model.slug}
            fixedStatus="PENDING"
            caption={`Contracts for ${model.name} waiting for approval`}
          />
        </section>
      ))}
    </>
  );
}
