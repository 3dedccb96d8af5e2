// Everything metered (admins): the usage panel with no scope, and the last 30 days broken down per model and
// per consumer.
import { useMemo } from 'react';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { money, UsagePanel } from '../../components/UsagePanel';
import { graphql } from '../../gql';
import type { UsageBreakdownQuery } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

const UsageBreakdown = graphql(`
  query UsageBreakdown($from: DateTime!) {
    byModel: usage(filter: { from: $from, groupBy: MODEL }) {
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
    byConsumer: usage(filter: { from: $from, groupBy: CONSUMER }) {
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
  }
`);

const SPAN_DAYS = 30;

type Buckets = UsageBreakdownQuery['byModel']['series'];

function BreakdownTable({ caption, keyHeading, buckets }: { caption: string; keyHeading: string; buckets: Buckets }) {
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
            <th scope="row">
              <code>{bucket.key}</code>
            </th>
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
              keyHeading="Consumer (account id)"
              buckets={data.byConsumer.series}
            />
          </>
        )}
      </section>
    </>
  );
}
