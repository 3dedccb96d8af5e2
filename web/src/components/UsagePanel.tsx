// Usage the viewer may see (the API decides: a consumer its own, an owner its models', an admin everything),
// narrowed by model/contract/consumer: totals, a daily chart, per-contract bars, and the CSV export.
import { useMemo, useState } from 'react';
import { bearer, refreshSession, restErrorOf } from '../api/client';
import { describeError } from '../api/errors';
import { Link } from 'react-router-dom';
import { useGql, useSession } from '../api/hooks';
import { graphql } from '../gql';
import type { UsageQuery } from '../gql/graphql';
import { Chart } from './Chart';
import { ErrorMessage } from './ErrorMessage';

const Usage = graphql(`
  query Usage($days: UsageFilter!, $contracts: UsageFilter!) {
    days: usage(filter: $days) {
      totals {
        calls
        predictions
        billableUnits
        errors
        p50LatencyMs
        amounts {
          amount
          currency
        }
      }
      series {
        key
        figures {
          calls
          predictions
          billableUnits
          errors
          amounts {
            amount
            currency
          }
        }
      }
    }
    contracts: usage(filter: $contracts) {
      series {
        key
        figures {
          calls
          billableUnits
          amounts {
            amount
            currency
          }
        }
      }
    }
  }
`);

// Names for the per-contract bars, in one request, from whichever list the viewer may read: a model's contracts
// (its owner, admins) name the plan and the consumer; the viewer's own contracts name the model and the plan.
const ContractsOfModel = graphql(`
  query UsageContractsOfModel($model: String!) {
    contractsForModelConnection(model: $model, first: 100) {
      edges {
        node {
          id
          terms {
            planName
          }
          consumer {
            displayName
          }
        }
      }
    }
  }
`);

const ContractsOfViewer = graphql(`
  query UsageContractsOfViewer {
    myContractsConnection(first: 100) {
      edges {
        node {
          id
          terms {
            planName
          }
          model {
            name
          }
        }
      }
    }
  }
`);

export interface UsageScope {
  model?: string;
  contract?: string;
  consumer?: string;
}

const DAY_MS = 86_400_000;

/** Every day from `from` to today (UTC, YYYY-MM-DD), so that a chart shows quiet days as zero. */
function daysSince(from: Date): string[] {
  const days: string[] = [];
  for (let t = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate()); t <= Date.now(); t += DAY_MS) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

/** Amounts in every currency, e.g. "1.20 EUR, 0.40 USD". */
export function money(amounts: { amount: string; currency: string }[]): string {
  return amounts.length ? amounts.map((a) => `${a.amount} ${a.currency}`).join(', ') : '0';
}

export function UsagePanel({
  scope,
  title,
  amountLabel = 'Amount',
  days: span = 30,
}: {
  scope: UsageScope;
  title: string;
  /** What the money is to the viewer: revenue for an owner, spend for a consumer. */
  amountLabel?: string;
  days?: number;
}) {
  const from = useMemo(() => new Date(Date.now() - (span - 1) * DAY_MS), [span]);
  const fromIso = useMemo(
    () => new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate())).toISOString(),
    [from],
  );
  const { data, error, isPending } = useGql(Usage, {
    days: { ...scope, from: fromIso, groupBy: 'DAY' },
    contracts: { ...scope, from: fromIso, groupBy: 'CONTRACT' },
  });
  const [downloadError, setDownloadError] = useState<unknown>(null);
  const days = useMemo(() => daysSince(from), [from]);
  const byDay = useMemo(() => new Map(data?.days.series.map((bucket) => [bucket.key, bucket.figures]) ?? []), [data]);
  const series = useMemo(
    () => [
      { label: 'Calls', values: days.map((day) => byDay.get(day)?.calls ?? 0) },
      { label: 'Billable units', values: days.map((day) => byDay.get(day)?.billableUnits ?? 0) },
      { label: 'Errors', values: days.map((day) => byDay.get(day)?.errors ?? 0) },
    ],
    [byDay, days],
  );
  // One line per currency billed in the span: amounts are decimal strings, added up per day for the chart only.
  const amountSeries = useMemo(() => {
    const currencies = data?.days.totals.amounts.map((amount) => amount.currency) ?? [];
    return currencies.map((currency) => ({
      label: currency,
      values: days.map((day) =>
        Number(byDay.get(day)?.amounts.find((amount) => amount.currency === currency)?.amount ?? 0),
      ),
    }));
  }, [data, byDay, days]);

  const downloadCsv = async () => {
    setDownloadError(null);
    const query = new URLSearchParams({ from: fromIso });
    for (const [name, value] of Object.entries(scope)) if (value) query.set(name, value);
    try {
      const get = () => fetch(`/v1/usage.csv?${query}`, { headers: bearer() });
      let response = await get();
      // An expired access token is refreshed once from the session cookie, as request() does.
      if (response.status === 401 && (await refreshSession())) response = await get();
      if (!response.ok) throw restErrorOf(response.status, await response.json().catch(() => null));
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement('a');
      link.href = url;
      link.download = 'usage.csv';
      link.click();
      URL.revokeObjectURL(url);
    } catch (error) {
      setDownloadError(error);
    }
  };

  return (
    <section aria-labelledby="usage-title">
      <h2 id="usage-title">{title}</h2>
      <ErrorMessage error={error} />
      {isPending && <p>Loading usage…</p>}
      {data && (
        <>
          <dl className="figures">
            <div>
              <dt>Calls</dt>
              <dd data-testid="usage-calls">{data.days.totals.calls}</dd>
            </div>
            <div>
              <dt>Billable units</dt>
              <dd data-testid="usage-units">{data.days.totals.billableUnits}</dd>
            </div>
            <div>
              <dt>Errors</dt>
              <dd>{data.days.totals.errors}</dd>
            </div>
            <div>
              <dt>Amount</dt>
              <dd>{money(data.days.totals.amounts)}</dd>
            </div>
            <div>
              <dt>Median latency</dt>
              <dd>{data.days.totals.p50LatencyMs == null ? '–' : `${data.days.totals.p50LatencyMs.toFixed(1)} ms`}</dd>
            </div>
          </dl>
          <Chart title={`${title} per day (last ${span} days)`} days={days} series={series} />
          {amountSeries.length > 0 && (
            <Chart title={`${amountLabel} per day (last ${span} days)`} days={days} series={amountSeries} />
          )}
          {data.contracts.series.length > 0 && <ContractBars scope={scope} buckets={data.contracts.series} />}
          <p>
            <button type="button" className="secondary" onClick={() => void downloadCsv()}>
              Download CSV
            </button>
          </p>
          {downloadError != null && (
            <p role="alert" className="error">
              {describeError(downloadError)}
            </p>
          )}
        </>
      )}
    </section>
  );
}

type ContractBuckets = UsageQuery['contracts']['series'];

/** Calls per contract as horizontal bars, most used first; every figure is also text in the table's cells. */
function ContractBars({ scope, buckets }: { scope: UsageScope; buckets: ContractBuckets }) {
  const { user } = useSession();
  const ofModel = useGql(ContractsOfModel, { model: scope.model ?? '' }, { enabled: Boolean(scope.model) });
  const ofViewer = useGql(
    ContractsOfViewer,
    {},
    { enabled: !scope.model && Boolean(user) && scope.consumer === user?.id },
  );
  const names = useMemo(() => {
    const byId = new Map<string, string>();
    for (const { node } of ofModel.data?.contractsForModelConnection.edges ?? []) {
      byId.set(node.id, `${node.terms.planName} · ${node.consumer.displayName}`);
    }
    for (const { node } of ofViewer.data?.myContractsConnection.edges ?? []) {
      byId.set(node.id, node.model ? `${node.model.name} · ${node.terms.planName}` : node.terms.planName);
    }
    return byId;
  }, [ofModel.data, ofViewer.data]);
  const sorted = useMemo(() => [...buckets].sort((a, b) => b.figures.calls - a.figures.calls), [buckets]);
  const most = Math.max(1, ...sorted.map((bucket) => bucket.figures.calls));
  return (
    <table className="contract-bars">
      <caption>Per contract</caption>
      <thead>
        <tr>
          <th scope="col">Contract</th>
          <th scope="col">Calls</th>
          <th scope="col">Billable units</th>
          <th scope="col">Amount</th>
        </tr>
      </thead>
      <tbody>
        {sorted.map((bucket) => {
          const name = names.get(bucket.key);
          return (
            <tr key={bucket.key}>
              <th scope="row">
                {name ??
                  // No name the viewer may read: an admin follows the id to the contract's audit trail.
                  (user?.role === 'ADMIN' ? (
                    <Link to={`/admin/audit?target=${encodeURIComponent(bucket.key)}`}>
                      <code>{bucket.key}</code>
                    </Link>
                  ) : (
                    <code>{bucket.key}</code>
                  ))}
              </th>
              <td className="contract-bars-calls">
                <span className="bar" aria-hidden="true">
                  <span style={{ width: `${(bucket.figures.calls / most) * 100}%` }} />
                </span>
                <span>{bucket.figures.calls}</span>
              </td>
              <td>{bucket.figures.billableUnits}</td>
              <td>{money(bucket.figures.amounts)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
