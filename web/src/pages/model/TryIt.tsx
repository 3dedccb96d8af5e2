// "Try it": one prediction from the page, in the form the version's typed signature (io) asks for — a drawing
// for image models, text for text models, a form of the features for tabular ones, numbers otherwise — and
// its answer: the top labels as bars, the latency and the quota units it took.
import { useRef, useState, type FormEvent } from 'react';
import { useGql, useGqlMutation } from '../../api/hooks';
import { DigitCanvas, pixelsFor } from '../../components/DigitCanvas';
import { ErrorMessage } from '../../components/ErrorMessage';
import { TopKBars } from '../../components/TopKBars';
import { graphql } from '../../gql';
import type { TryItSignatureQuery } from '../../gql/graphql';

const TOP_K = 5;
// The API's default PREDICT_MAX_STRING_LENGTH is far above what a person pastes; this keeps the form honest.
const MAX_TEXT_LENGTH = 10_000;

// Its own request: the signature is four levels deep, too deep to ride under the page's viewerContract.
const TryItSignature = graphql(`
  query TryItSignature($slug: String!, $version: String!) {
    model(slug: $slug) {
      id
      version(version: $version) {
        id
        version
        io {
          named
          inputs {
            name
            shape
            dtype
            range {
              min
              max
            }
            preprocessing {
              __typename
              ... on ImagePreprocessing {
                height
                width
                channels
                scaling
              }
              ... on TextPreprocessing {
                maxLength
              }
              ... on TabularPreprocessing {
                features {
                  name
                }
              }
            }
          }
          outputs {
            name
            kind
          }
        }
      }
    }
  }
`);

const TryPredict = graphql(`
  mutation TryPredict($input: PredictInput!) {
    predict(input: $input) {
      id
      latencyMs
      quotaUnits
      modelVersion {
        version
      }
      contract {
        id
      }
      outputs {
        label
        score
        top {
          label
          score
        }
        values
      }
    }
  }
`);

type SignedVersion = NonNullable<NonNullable<TryItSignatureQuery['model']>['version']>;
type TensorInput = SignedVersion['io']['inputs'][number];

/** What the form sends as the one instance, or what the person must fix first. */
type Instance = { value: unknown } | { problem: string };

/** Numbers typed by hand (commas or spaces between them), checked against the input's size and type. */
function parseNumbers(text: string, input: TensorInput): Instance {
  const size = input.shape.reduce((a, b) => a * b, 1);
  const values = text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (values.length !== size) return { problem: `Enter exactly ${size} numbers (you entered ${values.length}).` };
  if (values.some((value) => !Number.isFinite(value))) return { problem: 'Enter numbers only.' };
  if (input.dtype === 'INT32' && values.some((value) => !Number.isInteger(value)))
    return { problem: 'Enter whole numbers only.' };
  return { value: values };
}

export function TryIt({ slug, version }: { slug: string; version: string }) {
  const { data, error } = useGql(TryItSignature, { slug, version });
  const signed = data?.model?.version;
  return (
    <section aria-labelledby="try-it" className="try-it">
      <h2 id="try-it">Try it (v{version})</h2>
      <ErrorMessage error={error} />
      {signed && <TryItForm slug={slug} version={signed} />}
    </section>
  );
}

function TryItForm({ slug, version }: { slug: string; version: SignedVersion }) {
  const predict = useGqlMutation(TryPredict);
  const canvasRef = useRef<HTMLCanvasElement | null>(null);
  const [text, setText] = useState('');
  const [features, setFeatures] = useState<Record<string, string>>({});
  const [invalid, setInvalid] = useState<string | null>(null);
  const input = version.io.inputs[0];
  const output = version.io.outputs[0];

  if (version.io.named || !input || !output) {
    return <p>This model takes several named inputs: call it with the API (the GraphQL IDE is at /graphql).</p>;
  }
  const preprocessing = input.preprocessing;

  function instance(): Instance {
    switch (preprocessing.__typename) {
      case 'ImagePreprocessing':
        return {
          value: pixelsFor(canvasRef.current!, {
            height: preprocessing.height,
            width: preprocessing.width,
            channels: preprocessing.channels,
            scaling: preprocessing.scaling,
          }),
        };
      case 'TextPreprocessing':
        return text.trim() ? { value: text } : { problem: 'Enter some text.' };
      case 'TabularPreprocessing': {
        const row: Record<string, number> = {};
        for (const { name } of preprocessing.features) {
          const typed = features[name]?.trim() ?? '';
          if (!typed || !Number.isFinite(Number(typed))) return { problem: `Enter a number for ${name}.` };
          row[name] = Number(typed);
        }
        return { value: row };
      }
      default:
        return parseNumbers(text, input!);
    }
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    const checked = instance();
    if ('problem' in checked) {
      setInvalid(checked.problem);
      return;
    }
    setInvalid(null);
    predict.mutate({ input: { model: slug, version: version.version, inputs: [checked.value], topK: TOP_K } });
  }

  const result = predict.data?.predict;
  const answer = result?.outputs[0];
  return (
    <>
      {/* noValidate: the browser's own bubble would stop an empty or unparsable feature before submit, out of
          reach of screen readers; the form's check below says which feature, in the page. */}
      <form onSubmit={submit} noValidate>
        {preprocessing.__typename === 'ImagePreprocessing' && (
          <>
            <p>
              Draw one digit anywhere in the square: it is centred and sized as MNIST's digits were, and sent as{' '}
              {preprocessing.height}×{preprocessing.width} pixels.
            </p>
            <DigitCanvas canvasRef={canvasRef} />
          </>
        )}
        {preprocessing.__typename === 'TextPreprocessing' && (
          <label>
            Text to classify
            <textarea
              rows={5}
              cols={60}
              maxLength={MAX_TEXT_LENGTH}
              value={text}
              onChange={(event) => setText(event.target.value)}
            />
          </label>
        )}
        {preprocessing.__typename === 'TabularPreprocessing' && (
          <fieldset>
            <legend>Features</legend>
            {preprocessing.features.map(({ name }) => (
              <label key={name}>
                {name}
                <input
                  type="number"
                  step="any"
                  required
                  value={features[name] ?? ''}
                  onChange={(event) => setFeatures((current) => ({ ...current, [name]: event.target.value }))}
                />
              </label>
            ))}
          </fieldset>
        )}
        {preprocessing.__typename === 'NoPreprocessing' && (
          <label>
            {input.shape.reduce((a, b) => a * b, 1)} numbers, separated by commas or spaces
            {input.range && ` (each from ${input.range.min} to ${input.range.max})`}
            <textarea
              rows={4}
              cols={60}
              maxLength={MAX_TEXT_LENGTH}
              value={text}
              onChange={(event) => setText(event.target.value)}
            />
          </label>
        )}
        {invalid && (
          <p role="alert" className="error">
            {invalid}
          </p>
        )}
        <ErrorMessage error={predict.error} />
        <button type="submit" disabled={predict.isPending}>
          {predict.isPending ? 'Predicting…' : 'Predict'}
        </button>
      </form>
      {result && answer && (
        <div className="try-it-result" role="status">
          {answer.label && (
            <p className="try-it-label">
              Prediction: <strong>{answer.label}</strong>
            </p>
          )}
          {answer.top && <TopKBars scores={answer.top} />}
          {output.kind === 'VALUES' && <p>Values: {answer.values.map((value) => value.toPrecision(4)).join(', ')}</p>}
          <p className="muted">
            v{result.modelVersion.version} · {result.latencyMs.toFixed(1)} ms ·{' '}
            {result.contract
              ? `${result.quotaUnits} quota unit${result.quotaUnits === 1 ? '' : 's'} used`
              : 'not billed (you manage this model)'}
          </p>
        </div>
      )}
    </>
  );
}
