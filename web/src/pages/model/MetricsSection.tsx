// The latest version's self-reported metrics: headline figures, the per-class table and the confusion matrix.
import { ConfusionMatrix } from '../../components/ConfusionMatrix';
import type { ModelPageQuery } from '../../gql/graphql';

type Metrics = NonNullable<NonNullable<NonNullable<ModelPageQuery['model']>['latest']>['metrics']>;

const percent = (value: number) => `${(value * 100).toFixed(1)}%`;

export function MetricsSection({ version, metrics }: { version: string; metrics: Metrics }) {
  return (
    <section aria-labelledby="metrics">
      <h2 id="metrics">Metrics (v{version})</h2>
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
