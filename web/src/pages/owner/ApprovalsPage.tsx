// /owner/approvals: contracts waiting for the owner's approval, across the owner's models. The API has no query
// of pending contracts across models for an owner, so each model (one page of 100) asks for its own.
import { useCallback, useState } from 'react';
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
  // Pending contracts per model, as each model's table counts them: a model with none is hidden (its table stays
  // mounted, so that it shows up again when a contract arrives), and none anywhere is said in one sentence.
  const [pendingBySlug, setPendingBySlug] = useState<Record<string, number>>({});
  const countPending = useCallback(
    (slug: string, count: number) =>
      // The same count again keeps the same state (the table reports on every render).
      setPendingBySlug((current) => (current[slug] === count ? current : { ...current, [slug]: count })),
    [],
  );
  const models = data?.models.edges ?? [];
  const nothingPending = models.length > 0 && models.every(({ node: model }) => pendingBySlug[model.slug] === 0);
  return (
    <>
      <h1>Approvals</h1>
      <p className="muted">
        Contracts under plans that require your approval wait here until you approve or reject them.
      </p>
      <ErrorMessage error={error} />
      {isPending && <p>Loading your models…</p>}
      {data?.models.edges.length === 0 && <p>You have no models yet.</p>}
      {nothingPending && <p role="status">Nothing is waiting for your approval.</p>}
      {models.map(({ node: model }) => (
        <section key={model.id} aria-labelledby={`approvals-${model.id}`} hidden={pendingBySlug[model.slug] === 0}>
          <h2 id={`approvals-${model.id}`}>
            <Link to={`/owner/models/${model.slug}`}>{model.name}</Link>
          </h2>
          <ModelContractsTable
            slug={model.slug}
            fixedStatus="PENDING"
            caption={`Contracts for ${model.name} waiting for approval`}
            onTotalCount={(count) => countPending(model.slug, count)}
          />
        </section>
      ))}
    </>
  );
}
