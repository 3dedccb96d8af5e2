// Publishing a version from files: the model's files are uploaded (with progress) to POST /v1/artifacts, then
// publishModelVersion makes them an immutable version, with an optional signature (the one inferred from
// model.json says nothing about images, so without it Try it offers no drawing), labels, stated metrics and the
// labelled examples the owner mark's cost is measured on.
import { useId, useState, type FormEvent } from 'react';
import { ApiError } from '../../api/client';
import { useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import type { EvaluationDataInput, EvaluationMetricsInput } from '../../gql/graphql';
import { ErrorMessage } from '../ErrorMessage';
import { ArtifactDropZone, useArtifactUpload } from './ArtifactDropZone';

const PublishVersion = graphql(`
  mutation PublishOwnerVersion($input: PublishModelVersionInput!) {
    publishModelVersion(input: $input) {
      id
      version
      watermark {
        marked
      }
    }
  }
`);

/** The API takes up to 10,000 examples; a file much larger than that many digits is a wrong file. */
const MAX_EXAMPLES_BYTES = 64 * 1024 * 1024;

function badInput(message: string): ApiError {
  return new ApiError([{ code: 'BAD_USER_INPUT', message }]);
}

/** An examples file: `{"inputs": [...], "labels": [...]}`, as predict takes inputs and class indices. */
async function readExamples(file: File): Promise<EvaluationDataInput> {
  if (file.size > MAX_EXAMPLES_BYTES) throw badInput('The examples file is larger than 64 MB.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(await file.text());
  } catch {
    throw badInput('The examples file is not JSON.');
  }
  const examples = parsed as { inputs?: unknown; labels?: unknown };
  if (!Array.isArray(examples.inputs)) throw badInput('The examples file needs an "inputs" list.');
  if (examples.labels !== undefined && !Array.isArray(examples.labels)) {
    throw badInput('The examples file\'s "labels" must be a list of class indices.');
  }
  return { inputs: examples.inputs, labels: examples.labels as number[] | undefined };
}

/** The signature as typed: JSON (checked against the model by the API), or null to let the API infer it. */
function parseSignature(text: string): unknown {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw badInput('The signature is not JSON.');
  }
}

const optionalNumber = (value: string) => (value.trim() === '' ? null : Number(value));

export function PublishVersionForm({ slug }: { slug: string }) {
  const upload = useArtifactUpload();
  const publish = useGqlMutation(PublishVersion);
  const [version, setVersion] = useState('');
  const [changelog, setChangelog] = useState('');
  const [labels, setLabels] = useState('');
  const [signature, setSignature] = useState('');
  const [watermark, setWatermark] = useState(true);
  const [examples, setExamples] = useState<File | null>(null);
  const [metrics, setMetrics] = useState({ dataset: '', samples: '', accuracy: '', macroF1: '' });
  const [working, setWorking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const id = useId();

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    setNotice('');
    if (!upload.files.some((file) => file.name.endsWith('.json'))) {
      setError(badInput('Choose model.json and its weight files.'));
      return;
    }
    setWorking(true);
    try {
      const parsedSignature = parseSignature(signature);
      const evaluation = examples ? await readExamples(examples) : null;
      const stated: EvaluationMetricsInput | null = metrics.dataset.trim()
        ? {
            dataset: metrics.dataset.trim(),
            samples: optionalNumber(metrics.samples) ?? 0,
            accuracy: optionalNumber(metrics.accuracy),
            macroF1: optionalNumber(metrics.macroF1),
          }
        : null;
      const artifact = await upload.upload();
      const { publishModelVersion } = await publish.mutateAsync({
        input: {
          model: slug,
          version: version.trim(),
          artifactId: artifact.id,
          changelog,
          signature: parsedSignature,
          watermark,
          labels: labels.trim()
            ? labels
                .split(',')
                .map((label) => label.trim())
                .filter(Boolean)
            : null,
          metrics: stated,
          evaluation,
        },
      });
      setNotice(
        `Published version ${publishModelVersion.version}${publishModelVersion.watermark.marked ? ', watermarked' : ''}.`,
      );
      setVersion('');
      setChangelog('');
    } catch (failure) {
      setError(failure);
    } finally {
      setWorking(false);
    }
  };

  const metric = (key: keyof typeof metrics, label: string, props: Record<string, unknown>) => (
    <div>
      <label htmlFor={`${id}-${key}`}>{label}</label>
      <input
        id={`${id}-${key}`}
        value={metrics[key]}
        onChange={(event) => setMetrics((m) => ({ ...m, [key]: event.target.value }))}
        {...props}
      />
    </div>
  );

  return (
    <section aria-labelledby="publish-title">
      <h2 id="publish-title">Publish a version</h2>
      <form onSubmit={(event) => void submit(event)} className="stacked-form" aria-labelledby="publish-title">
        <ArtifactDropZone label="Model files (model.json and weights)" upload={upload} disabled={working} />
        <label htmlFor={`${id}-version`}>Version (semantic, e.g. 1.0.0)</label>
        <input
          id={`${id}-version`}
          required
          maxLength={64}
          pattern="\d+\.\d+\.\d+(-[0-9A-Za-z.\-]+)?"
          value={version}
          onChange={(event) => setVersion(event.target.value)}
        />
        <label htmlFor={`${id}-changelog`}>Changelog</label>
        <textarea
          id={`${id}-changelog`}
          rows={2}
          maxLength={5000}
          value={changelog}
          onChange={(event) => setChangelog(event.target.value)}
        />
        <label htmlFor={`${id}-labels`}>Class labels, comma-separated in output order (classifiers)</label>
        <input
          id={`${id}-labels`}
          maxLength={20_000}
          value={labels}
          onChange={(event) => setLabels(event.target.value)}
        />
        <label htmlFor={`${id}-signature`}>
          Signature (optional JSON, e.g. {'{"input": {"shape": [28, 28, 1], "preprocessing": {"kind": "image", …}}}'};
          inferred from the model when empty)
        </label>
        <textarea
          id={`${id}-signature`}
          rows={3}
          // A text model's vocabulary rides in it; the default request body limit is 8 MB.
          maxLength={8_000_000}
          spellCheck={false}
          value={signature}
          onChange={(event) => setSignature(event.target.value)}
        />
        <label className="check">
          <input type="checkbox" checked={watermark} onChange={(event) => setWatermark(event.target.checked)} />{' '}
          Watermark the served weights (recommended: lets you trace leaked copies)
        </label>
        <label htmlFor={`${id}-examples`}>
          Evaluation examples (optional JSON file: {'{"inputs": [...], "labels": [class indices]}'}), to measure the
          watermark's cost
        </label>
        <input
          id={`${id}-examples`}
          type="file"
          accept=".json,application/json"
          onChange={(event) => setExamples(event.target.files?.[0] ?? null)}
        />
        <fieldset>
          <legend>Stated metrics (optional)</legend>
          <div className="form-grid">
            {metric('dataset', 'Data set name', { maxLength: 200 })}
            {metric('samples', 'Samples', { type: 'number', min: 1, max: 1_000_000_000, step: 1 })}
            {metric('accuracy', 'Accuracy (0 to 1)', { type: 'number', min: 0, max: 1, step: 'any' })}
            {metric('macroF1', 'Macro F1 (0 to 1)', { type: 'number', min: 0, max: 1, step: 'any' })}
          </div>
        </fieldset>
        <ErrorMessage error={error} />
        <button type="submit" disabled={working}>
          {working ? 'Publishing…' : 'Publish version'}
        </button>
        {notice && (
          <p role="status" className="notice">
            {notice}
          </p>
        )}
      </form>
    </section>
  );
}
