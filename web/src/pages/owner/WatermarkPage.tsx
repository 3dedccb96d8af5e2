// /owner/watermark: upload a suspect model's files and test them for the marks of the owner's models (the owner
// mark and every licensee's fingerprint); a match links to the version and, for a leaked copy, its contract.
import { useState, type FormEvent } from 'react';
import { Link } from 'react-router-dom';
import { ApiError, request } from '../../api/client';
import { ErrorMessage } from '../../components/ErrorMessage';
import { ArtifactDropZone, useArtifactUpload } from '../../components/owner/ArtifactDropZone';
import { RequireRole } from '../../components/RequireRole';
import { graphql } from '../../gql';
import type { VerifySuspectQuery } from '../../gql/graphql';

const VerifySuspect = graphql(`
  query VerifySuspect($artifactId: ID!) {
    verifyWatermark(artifactId: $artifactId) {
      verdict
      keysTried
      matches {
        kind
        matchedBits
        totalBits
        pValue
        modelVersion {
          id
          version
          model {
            slug
            name
          }
        }
        leakedContract {
          id
          consumer {
            displayName
          }
          terms {
            planName
          }
        }
      }
    }
  }
`);

export function WatermarkPage() {
  return (
    <RequireRole role="OWNER" title="Watermark check">
      {() => <SuspectCheck />}
    </RequireRole>
  );
}

function SuspectCheck() {
  const upload = useArtifactUpload();
  const [working, setWorking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [result, setResult] = useState<VerifySuspectQuery['verifyWatermark'] | null>(null);

  // verifyWatermark is rate limited and audited: it runs once per press, never as a cached, refetched query.
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    setResult(null);
    if (!upload.files.some((file) => file.name.endsWith('.json'))) {
      setError(new ApiError([{ code: 'BAD_USER_INPUT', message: 'Choose model.json and its weight files.' }]));
      return;
    }
    setWorking(true);
    try {
      const artifact = await upload.upload();
      const { verifyWatermark } = await request(VerifySuspect, { artifactId: artifact.id });
      setResult(verifyWatermark);
    } catch (failure) {
      setError(failure);
    } finally {
      setWorking(false);
    }
  };

  return (
    <>
      <h1>Watermark check</h1>
      <p className="muted">
        Found a copy of a model somewhere? Upload its files: they are tested for the mark of each of your versions and
        the fingerprint of each licensee's copy.
      </p>
      <form onSubmit={(event) => void submit(event)} className="stacked-form" aria-label="Check a suspect model">
        <ArtifactDropZone label="Suspect model files (model.json and weights)" upload={upload} disabled={working} />
        <ErrorMessage error={error} />
        <button type="submit" disabled={working}>
          {working ? 'Checking…' : 'Check for watermarks'}
        </button>
      </form>
      {result && (
        <section aria-labelledby="verdict-title">
          <h2 id="verdict-title">Verdict: {result.verdict === 'MATCH' ? 'MATCH' : 'NO MATCH'}</h2>
          <p role="status">
            {result.verdict === 'MATCH'
              ? `This model carries ${result.matches.length === 1 ? 'a mark' : `${result.matches.length} marks`} of yours.`
              : 'None of your marks was found.'}{' '}
            ({result.keysTried === 1 ? '1 key' : `${result.keysTried} keys`} tried.)
          </p>
          {result.matches.length > 0 && (
            <table>
              <caption className="visually-hidden">Marks found</caption>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Mark</th>
                  <th scope="col">Leaked by</th>
                  <th scope="col">Bits matched</th>
                  <th scope="col">Chance by accident</th>
                </tr>
              </thead>
              <tbody>
                {result.matches.map((match) => (
                  <tr key={`${match.modelVersion.id}-${match.kind}-${match.leakedContract?.id ?? ''}`}>
                    <td>
                      <Link to={`/owner/models/${match.modelVersion.model.slug}`}>
                        {match.modelVersion.model.name} {match.modelVersion.version}
                      </Link>
                    </td>
                    <td>{match.kind === 'OWNER' ? 'Your owner mark' : 'A licensee fingerprint'}</td>
                    <td>
                      {match.leakedContract ? (
                        <Link to={`/owner/models/${match.modelVersion.model.slug}`}>
                          {match.leakedContract.consumer.displayName} ({match.leakedContract.terms.planName}, contract{' '}
                          <code>{match.leakedContract.id}</code>)
                        </Link>
                      ) : (
                        '–'
                      )}
                    </td>
                    <td>
                      {match.matchedBits} of {match.totalBits}
                    </td>
                    <td>{match.pValue.toExponential(1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      )}
    </>
  );
}
