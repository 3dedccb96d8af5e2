// Contracts for one of the owner's models (newest first, paged), filtered by status, each with the actions the
// API offers on it. The approvals page shows the same table fixed to PENDING.
import { useEffect, useId, useState } from 'react';
import { useGql } from '../../api/hooks';
import { graphql } from '../../gql';
import type { ContractStatus } from '../../gql/graphql';
import { CONTRACT_STATUS_WORDS } from '../../pages/model/words';
import { ErrorMessage } from '../ErrorMessage';
import { Pager, useCursor } from '../Pager';
import { ContractActions } from './ContractActions';

const ModelContracts = graphql(`
  query ModelContracts($slug: String!, $status: ContractStatus, $after: String) {
    contractsForModelConnection(model: $slug, filter: { status: $status }, first: 20, after: $after) {
      totalCount
      edges {
        node {
          id
          status
          statusReason
          consumer {
            id
            displayName
          }
          terms {
            planName
          }
          predictionsUsed
          predictionQuota
          createdAt
          viewerActions
        }
      }
      pageInfo {
        ...PagerPageInfo
      }
    }
  }
`);

export function ModelContractsTable({
  slug,
  fixedStatus,
  caption,
  onTotalCount,
}: {
  slug: string;
  /** Show only contracts of this status, with no filter control. */
  fixedStatus?: ContractStatus;
  caption: string;
  /** Told how many contracts match, whenever that is (re)counted: the approvals page hides empty models. */
  onTotalCount?: (count: number) => void;
}) {
  const cursor = useCursor();
  const [status, setStatus] = useState<ContractStatus | ''>('');
  const filterId = useId();
  const { data, error, isPending } = useGql(ModelContracts, {
    slug,
    status: fixedStatus ?? (status || null),
    after: cursor.after,
  });
  const contracts = data?.contractsForModelConnection;
  const totalCount = contracts?.totalCount;
  useEffect(() => {
    if (totalCount != null) onTotalCount?.(totalCount);
  }, [totalCount, onTotalCount]);
  return (
    <div>
      {!fixedStatus && (
        <p>
          <label htmlFor={filterId}>Show contracts</label>
          <select
            id={filterId}
            value={status}
            onChange={(event) => {
              setStatus(event.target.value as ContractStatus | '');
              cursor.reset();
            }}
          >
            <option value="">of every status</option>
            {(Object.keys(CONTRACT_STATUS_WORDS) as ContractStatus[]).map((value) => (
              <option key={value} value={value}>
                {CONTRACT_STATUS_WORDS[value].toLowerCase()}
              </option>
            ))}
          </select>
        </p>
      )}
      <ErrorMessage error={error} />
      {isPending && <p>Loading contracts…</p>}
      {contracts && contracts.totalCount === 0 && <p className="muted">No contracts.</p>}
      {contracts && contracts.edges.length > 0 && (
        <table>
          <caption className="visually-hidden">{caption}</caption>
          <thead>
            <tr>
              <th scope="col">Consumer</th>
              <th scope="col">Plan</th>
              <th scope="col">Status</th>
              <th scope="col">Used</th>
              <th scope="col">Since</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {contracts.edges.map(({ node: contract }) => (
              <tr key={contract.id}>
                <td>{contract.consumer.displayName}</td>
                <td>{contract.terms.planName}</td>
                <td>
                  {CONTRACT_STATUS_WORDS[contract.status]}
                  {contract.statusReason && <div className="muted">Reason: {contract.statusReason}</div>}
                </td>
                <td>
                  {contract.predictionsUsed}
                  {contract.predictionQuota != null && ` of ${contract.predictionQuota}`}
                </td>
                <td>{new Date(contract.createdAt).toLocaleDateString()}</td>
                <td>
                  <ContractActions
                    contract={contract}
                    subject={`${contract.consumer.displayName}'s ${contract.terms.planName} contract`}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pageInfo={contracts?.pageInfo} cursor={cursor} label={caption} />
    </div>
  );
}
