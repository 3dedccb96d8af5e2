// The viewer's contracts, newest first, a page at a time, optionally of one status.
import { useState } from 'react';
import { useGql } from '../../api/hooks';
import { ContractCard } from '../../components/consumer/ContractCard';
import { ErrorMessage } from '../../components/ErrorMessage';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import type { ContractStatus } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

const MyContracts = graphql(`
  query MyContracts($filter: ContractFilter, $after: String) {
    myContractsConnection(filter: $filter, first: 10, after: $after) {
      totalCount
      pageInfo {
        ...PagerPageInfo
      }
      edges {
        node {
          id
          status
          statusReason
          model {
            slug
            name
          }
          terms {
            planName
            planRevision
            versions
            pricePerPrediction
            currency
            period
            rateLimitPerMinute
            commercialUse
            downloadAllowed
            explanationsAllowed
          }
          predictionsUsed
          predictionQuota
          periodResetsAt
          startsAt
          expiresAt
          certificate
          pinnedAlias
          pinnedVersion {
            version
          }
          pendingUpgrade {
            since
            appliesAt
            version {
              version
            }
            comparison {
              breaking
              reasons
            }
          }
          viewerActions
        }
      }
    }
  }
`);

const STATUSES: ContractStatus[] = ['ACTIVE', 'PENDING', 'SUSPENDED', 'EXPIRED', 'CANCELLED', 'REVOKED', 'REJECTED'];

export function ContractsPage() {
  return (
    <RequireRole role="SIGNED_IN" title="My contracts">
      {() => <ViewersContracts />}
    </RequireRole>
  );
}

function ViewersContracts() {
  const [status, setStatus] = useState<ContractStatus | ''>('');
  const cursor = useCursor();
  const { data, error, isPending } = useGql(MyContracts, {
    filter: status ? { status } : null,
    after: cursor.after,
  });
  const connection = data?.myContractsConnection;
  return (
    <>
      <h1>My contracts</h1>
      <label>
        Status{' '}
        <select
          value={status}
          onChange={(event) => {
            setStatus(event.target.value as ContractStatus | '');
            cursor.reset();
          }}
        >
          <option value="">All</option>
          {STATUSES.map((value) => (
            <option key={value} value={value}>
              {value.charAt(0) + value.slice(1).toLowerCase()}
            </option>
          ))}
        </select>
      </label>
      <ErrorMessage error={error} />
      {isPending && <p>Loading contracts…</p>}
      {connection && (
        <>
          <p className="muted" aria-live="polite">
            {connection.totalCount === 1 ? '1 contract' : `${connection.totalCount} contracts`}
          </p>
          {connection.edges.map(({ node }) => (
            <ContractCard key={node.id} contract={node} />
          ))}
          <Pager pageInfo={connection.pageInfo} cursor={cursor} label="Contracts" />
        </>
      )}
    </>
  );
}
