// A version's metrics: those the marketplace measured (a published evaluation) beside those its owner stated
// (headline figures, the per-class table and the confusion matrix). An optimised version usually states none of
// its own: then its parent's are shown, labelled as the parent's.
import { ConfusionMatrix } from '../../components/ConfusionMatrix';
import { graphql } from '../../gql';
import type { VersionMetricsFragment } from '../../gql/graphql';

export const VersionMetrics = graphql(`
  fragment VersionMetrics on ModelVersion {
    version
    metrics {
      dataset
      samples
      accuracy
      macroF1
      perClass {
        label
        precision
        recall
        f1
        support
      }
      confusionMatrix
      labels
      mae
      rmse
    }
    verifiedMetrics {
      accuracy
      macroF1
      examples
      datasetSha256
      evaluatedAt
    }
  }
`);

type Metrics = NonNullable<VersionMetricsFragment['metrics']>;
type Verified = NonNullable<VersionMetricsFragment['verifiedMetrics']>;

const percent = (value: number) => `${(value * 100).toFixed(1)}%`;

export function MetricsSection({
  shown,
}: {
  shown: VersionMetricsFragment & { derivedFrom?: VersionMetricsFragment | null };
}) {
  const stated = shown.metrics ? shown : shown.derivedFrom?.metrics ? shown.derivedFrom : null;
  if (!stated?.metrics && !shown.verifiedMetrics) return null;
  return (
    <section aria-labelledby="metrics">
      <h2 id="metrics">Metrics (v{shown.version})</h2>
      {shown.verifiedMetrics && <VerifiedFigures verified={shown.verifiedMetrics} />}
      {stated?.metrics && (
        <StatedMetrics
          metrics={stated.metrics}
          inheritedFrom={stated.version === shown.version ? null : stated.version}
          shownVersion={shown.version}
        />
      )}
    </section>
  );
}

function VerifiedFigures({ verified }: { verified: Verified }) {
  return (
    <section aria-labelledby="verified-metrics" className="verified-metrics">
      <h3 id="verified-metrics">Measured by the marketplace</h3>
      <p className="muted">
        Measured on {verified.examples.toLocaleString()} examples (data set{' '}
        <code title={verified.datasetSha256}>{verified.datasetSha256.slice(0, 12)}</code>) on{' '}
        {new Date(verified.evaluatedAt).toLocaleDateString()}.
      </p>
      <dl className="figures">
        <div>
          <dt>Measured accuracy</dt>
          <dd>{percent(verified.accuracy)}</dd>
        </div>
        <div>
          <dt>Measured macro-F1</dt>
          <dd>{verified.macroF1.toFixed(3)}</dd>
        </div>
      </dl>
    </section>
  );
}

function StatedMetrics({
  metrics,
  inheritedFrom,
  shownVersion,
}: {
  metrics: Metrics;
  /** The version these metrics belong to when it is not the one shown (the one it was derived from). */
  inheritedFrom: string | null;
  shownVersion: string;
}) {
  return (
    <section aria-labelledby="stated-metrics">
      <h3 id="stated-metrics">
        Stated by the owner{inheritedFrom && ` (v${inheritedFrom}, the version v${shownVersion} was derived from)`}
      </h3>
      <p className="muted">
        Reported by the owner on {metrics.dataset} ({metrics.samples.toLocaleString()} samples).
      </p>
      <dl className="figures">
        {metrics.accuracy !== null && metrics.accuracy !== undefined && (
          <div>
            <dt>Accuracy</dt>
            <dd>{percent(metrics.accuracy)}</dd>
          </div>
        )}
        {metrics.macroF1 !== null && metrics.macroF1 !== undefined && (
          <div>
            <dt>Macro-F1</dt>
            <dd>{metrics.macroF1.toFixed(3)}</dd>
          </div>
        )}
        {metrics.mae !== null && metrics.mae !== undefined && (
          <div>
            <dt>Mean absolute error</dt>
            <dd>{metrics.mae.toPrecision(4)}</dd>
          </div>
        )}
        {metrics.rmse !== null && metrics.rmse !== undefined && (
          <div>
            <dt>RMSE</dt>
            <dd>{metrics.rmse.toPrecision(4)}</dd>
          </div>
        )}
      </dl>
      {metrics.perClass && metrics.perClass.length > 0 && (
        <table className="per-class">
          <caption>Per class</caption>
          <thead>
            <tr>
              <th scope="col">Class</th>
              <th scope="col">Precision</th>
              <th scope="col">Recall</th>
              <th scope="col">F1</th>
              <th scope="col">Support</th>
            </tr>
          </thead>
          <tbody>
            {metrics.perClass.map((row) => (
              <tr key={row.label}>
                <th scope="row">{row.label}</th>
                <td>{row.precision.toFixed(3)}</td>
                <td>{row.recall.toFixed(3)}</td>
                <td>{row.f1.toFixed(3)}</td>
                <td>{row.support}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {metrics.confusionMatrix && metrics.labels && (
        <ConfusionMatrix labels={metrics.labels} matrix={metrics.confusionMatrix} />
      )}
    </section>
  );
}
