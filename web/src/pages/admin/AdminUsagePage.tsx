// Everything metered (admins): the usage panel with no scope, and the last 30 days broken down per model and
// per consumer.
import { useMemo, type ReactNode } from 'react';
import { Link } from 'react-router-dom';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { money, UsagePanel } from '../../components/UsagePanel';
import { graphql } from '../../gql';
import type { UsageBreakdownSeriesFragment } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

/** One breakdown's buckets; the page asks for two (by model, by consumer). */
export const UsageBreakdownSeries = graphql(`
  fragment UsageBreakdownSeries on UsageReport {
    series {
      key
      figures {
        calls
        billableUnits
        errors
        amounts {
          amount
          currency
        }
      }
    }
  }
`);

const UsageBreakdown = graphql(`
  query UsageBreakdown($from: DateTime!) {
    byModel: usage(filter: { from: $from, groupBy: MODEL }) {
      ...UsageBreakdownSeries
    }
    byConsumer: usage(filter: { from: $from, groupBy: CONSUMER }) {
      ...UsageBreakdownSeries
    }
  }
`);

// No query looks an account up by id (users searches e-mail and name only): consumers are named from the newest
// contracts, each of which names its consumer; one not among them is shown by id, linked to its audit trail.
const ConsumerNames = graphql(`
  query UsageConsumerNames {
    contractsConnection(first: 100) {
      edges {
        node {
          id
          consumer {
            id
            displayName
          }
        }
      }
    }
  }
`);

const SPAN_DAYS = 30;

type Buckets = UsageBreakdownSeriesFragment['series'];

function BreakdownTable({
  caption,
  keyHeading,
  buckets,
  keyCell = (key) => <code>{key}</code>,
}: {
  caption: string;
  keyHeading: string;
  buckets: Buckets;
  keyCell?: (key: string) => ReactNode;
}) {
  return (
    <table>
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">{keyHeading}</th>
          <th scope="col">Calls</th>
          <th scope="col">Billable units</th>
          <th scope="col">Errors</th>
          <th scope="col">Amount</th>
        </tr>
      </thead>
      <tbody>
        {buckets.length === 0 && (
          <tr>
            <td colSpan={5}>No usage.</td>
          </tr>
        )}
        {buckets.map((bucket) => (
          <tr key={bucket.key}>
            <th scope="row">{keyCell(bucket.key)}</th>
            <td>{bucket.figures.calls}</td>
            <td>{bucket.figures.billableUnits}</td>
            <td>{bucket.figures.errors}</td>
            <td>{money(bucket.figures.amounts)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function AdminUsagePage() {
  return (
    <RequireRole role="ADMIN" title="All usage">
      {() => <AllUsage />}
    </RequireRole>
  );
}

function AllUsage() {
  const from = useMemo(() => {
    const start = new Date(Date.now() - (SPAN_DAYS - 1) * 86_400_000);
    return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate())).toISOString();
  }, []);
  const { data, error } = useGql(UsageBreakdown, { from });
  const consumers = useGql(ConsumerNames, {}, { enabled: Boolean(data?.byConsumer.series.length) });
  const consumerNames = useMemo(
    () =>
      new Map(
        consumers.data?.contractsConnection.edges.map(({ node }) => [node.consumer.id, node.consumer.displayName]),
      ),
    [consumers.data],
  );
  return (
    <>
      <h1>All usage</h1>
      <UsagePanel scope={{}} title="Marketplace usage" days={SPAN_DAYS} />
      <section className="usage-breakdown" aria-labelledby="breakdown-title">
        <h2 id="breakdown-title">Breakdown (last {SPAN_DAYS} days)</h2>
        <ErrorMessage error={error} />
        {data && (
          <>
            <BreakdownTable caption="Per model" keyHeading="Model" buckets={data.byModel.series} />
            <BreakdownTable
              caption="Per consumer"
              keyHeading="Consumer"
              buckets={data.byConsumer.series}
              keyCell={(id) =>
                consumerNames.get(id) ?? (
                  <Link to={`/admin/audit?actor=${encodeURIComponent(id)}`} aria-label={`Account ${id}: its actions`}>
                    <code>{id}</code>
                  </Link>
                )
              }
            />
          </>
        )}
      </section>
    </>
  );
}
