// One of the viewer's contracts: status, model, quota, terms, certificate (copy, verify), a pending version
// upgrade to accept or decline, and cancel when the API lists CANCEL among viewerActions.
import { useState } from 'react';
import { Link } from 'react-router-dom';
import { request } from '../../api/client';
import { useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import type { MyContractsQuery, VerifyCertificateQuery } from '../../gql/graphql';
import { CopyButton } from '../CopyButton';
import { ErrorMessage } from '../ErrorMessage';
import { InlineConfirm } from '../InlineConfirm';

export type MyContract = MyContractsQuery['myContractsConnection']['edges'][number]['node'];

const VerifyCertificate = graphql(`
  query VerifyCertificate($token: String!) {
    verifyLicenseCertificate(token: $token) {
      valid
      reason
      status
      expiresAt
    }
  }
`);

const AcceptUpgrade = graphql(`
  mutation AcceptUpgrade($input: AcceptVersionUpgradeInput!) {
    acceptVersionUpgrade(input: $input) {
      id
    }
  }
`);

const DeclineUpgrade = graphql(`
  mutation DeclineUpgrade($input: DeclineVersionUpgradeInput!) {
    declineVersionUpgrade(input: $input) {
      id
    }
  }
`);

const CancelContract = graphql(`
  mutation CancelContract($input: CancelContractInput!) {
    cancelContract(input: $input) {
      id
    }
  }
`);

function QuotaBar({
  used,
  quota,
  resetsAt,
}: {
  used: number;
  quota: number | null | undefined;
  resetsAt?: string | null;
}) {
  const reset = resetsAt ? `, resets ${new Date(resetsAt).toLocaleDateString()}` : '';
  if (quota == null) {
    return (
      <p>
        Quota: {used} used of <strong>unlimited</strong>
        {reset}
      </p>
    );
  }
  const percent = quota > 0 ? Math.min(100, Math.round((used / quota) * 100)) : 100;
  return (
    <div className="quota">
      <p>
        Quota: {used} of {quota} units used ({percent}%){reset}
      </p>
      <div
        className="bar"
        role="progressbar"
        aria-label={`Quota used: ${used} of ${quota}`}
        aria-valuemin={0}
        aria-valuemax={quota}
        aria-valuenow={Math.min(used, quota)}
      >
        <span style={{ width: `${percent}%` }} />
      </div>
    </div>
  );
}

function Certificate({ token }: { token: string }) {
  const [verification, setVerification] = useState<VerifyCertificateQuery['verifyLicenseCertificate'] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState(false);
  const verify = async () => {
    setPending(true);
    setError(null);
    try {
      setVerification((await request(VerifyCertificate, { token })).verifyLicenseCertificate);
    } catch (failure) {
      setError(failure);
    } finally {
      setPending(false);
    }
  };
  return (
    <details className="certificate">
      <summary>Licence certificate</summary>
      <textarea readOnly aria-label="Licence certificate" value={token} rows={3} />
      <p>
        <CopyButton text={token} label="Copy certificate" />{' '}
        <button type="button" className="secondary" disabled={pending} onClick={() => void verify()}>
          Verify
        </button>
      </p>
      <ErrorMessage error={error} />
      {verification && (
        <p role="status" className={verification.valid ? 'notice' : 'error'}>
          {verification.valid
            ? `Valid: signed by this marketplace, the contract is ${verification.status?.toLowerCase() ?? 'active'}${
                verification.expiresAt ? ` until ${new Date(verification.expiresAt).toLocaleDateString()}` : ''
              }.`
            : `Not valid: ${verification.reason ?? 'unknown reason'}.`}
        </p>
      )}
    </details>
  );
}

export function ContractCard({ contract }: { contract: MyContract }) {
  const accept = useGqlMutation(AcceptUpgrade);
  const decline = useGqlMutation(DeclineUpgrade);
  const cancel = useGqlMutation(CancelContract);
  const upgrade = contract.pendingUpgrade;
  const title = contract.model?.name ?? contract.terms.planName;
  return (
    <article className="card contract" aria-labelledby={`contract-${contract.id}`}>
      <h2 id={`contract-${contract.id}`}>
        {contract.model ? <Link to={`/models/${contract.model.slug}`}>{title}</Link> : title}{' '}
        <span className={`status status-${contract.status.toLowerCase()}`}>{contract.status}</span>
      </h2>
      {contract.statusReason && <p className="muted">Reason: {contract.statusReason}</p>}
      <QuotaBar used={contract.predictionsUsed} quota={contract.predictionQuota} resetsAt={contract.periodResetsAt} />
      <dl className="contract-terms">
        <dt>Plan</dt>
        <dd>
          {contract.terms.planName} (revision {contract.terms.planRevision})
        </dd>
        <dt>Versions</dt>
        <dd>
          {contract.terms.versions}
          {contract.pinnedVersion && `, served ${contract.pinnedVersion.version}`}
          {contract.pinnedAlias && ` (follows ${contract.pinnedAlias})`}
        </dd>
        <dt>Price</dt>
        <dd>
          {contract.terms.pricePerPrediction} {contract.terms.currency} per prediction
        </dd>
        <dt>Quota period</dt>
        <dd>{contract.terms.period === 'MONTH' ? 'Monthly' : 'Whole contract'}</dd>
        <dt>Rate limit</dt>
        <dd>
          {contract.terms.rateLimitPerMinute == null ? 'None' : `${contract.terms.rateLimitPerMinute} per minute`}
        </dd>
        <dt>Rights</dt>
        <dd>
          {contract.terms.commercialUse ? 'Commercial use' : 'Non-commercial use'}
          {contract.terms.downloadAllowed ? ', download allowed' : ''}
          {contract.terms.explanationsAllowed ? ', explanations allowed' : ''}
        </dd>
        <dt>Valid</dt>
        <dd>
          {contract.startsAt ? `from ${new Date(contract.startsAt).toLocaleDateString()}` : 'not started'}
          {contract.expiresAt ? ` until ${new Date(contract.expiresAt).toLocaleDateString()}` : ', no expiry'}
        </dd>
      </dl>
      {contract.certificate && <Certificate token={contract.certificate} />}
      {upgrade && (
        <section className="upgrade" aria-label="Pending upgrade">
          <h3>Version {upgrade.version.version} is offered</h3>
          {upgrade.comparison.breaking && (
            <p className="error">Breaking change: a client written for the current version may fail.</p>
          )}
          {upgrade.comparison.reasons.length > 0 && (
            <ul>
              {upgrade.comparison.reasons.map((reason) => (
                <li key={reason}>{reason}</li>
              ))}
            </ul>
          )}
          {upgrade.appliesAt && <p>It applies by itself on {new Date(upgrade.appliesAt).toLocaleDateString()}.</p>}
          <p>
            <button
              type="button"
              disabled={accept.isPending}
              onClick={() => accept.mutate({ input: { contract: contract.id, version: upgrade.version.version } })}
            >
              Accept version {upgrade.version.version}
            </button>{' '}
            <button
              type="button"
              className="secondary"
              disabled={decline.isPending}
              onClick={() => decline.mutate({ input: { contract: contract.id } })}
            >
              Keep my version
            </button>
          </p>
          <ErrorMessage error={accept.error ?? decline.error} />
        </section>
      )}
      {contract.viewerActions.includes('CANCEL') && (
        <p>
          <InlineConfirm
            label="Cancel contract"
            question="End this contract for good? Calls under it stop at once."
            confirmLabel="Yes, cancel the contract"
            pending={cancel.isPending}
            onConfirm={() => cancel.mutate({ input: { id: contract.id } })}
          />
        </p>
      )}
      <ErrorMessage error={cancel.error} />
    </article>
  );
}
