// The owner's actions on one contract, exactly those the API lists in `viewerActions` (the console copies no
// policy). Rejecting, suspending and revoking ask for the reason the consumer is told.
import { useId, useState, type FormEvent } from 'react';
import { useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import type { ContractAction } from '../../gql/graphql';
import { ErrorMessage } from '../ErrorMessage';

const ApproveContract = graphql(`
  mutation ApproveContract($input: ApproveContractInput!) {
    approveContract(input: $input) {
      id
      status
    }
  }
`);

const RejectContract = graphql(`
  mutation RejectContract($input: RejectContractInput!) {
    rejectContract(input: $input) {
      id
      status
    }
  }
`);

const SuspendContract = graphql(`
  mutation SuspendContract($input: SuspendContractInput!) {
    suspendContract(input: $input) {
      id
      status
    }
  }
`);

const ResumeContract = graphql(`
  mutation ResumeContract($input: ResumeContractInput!) {
    resumeContract(input: $input) {
      id
      status
    }
  }
`);

const RevokeContract = graphql(`
  mutation RevokeContract($input: RevokeContractInput!) {
    revokeContract(input: $input) {
      id
      status
    }
  }
`);

/** The owner's actions, as the button words them; CANCEL is the consumer's own and not offered here. */
const VERBS: Partial<Record<ContractAction, string>> = {
  APPROVE: 'Approve',
  REJECT: 'Reject',
  SUSPEND: 'Suspend',
  RESUME: 'Resume',
  REVOKE: 'Revoke',
};

type ReasonAction = 'REJECT' | 'SUSPEND' | 'REVOKE';
const NEEDS_REASON = new Set<ContractAction>(['REJECT', 'SUSPEND', 'REVOKE']);

/** The API's limit on a reason. */
const MAX_REASON = 1000;

export function ContractActions({
  contract,
  subject,
}: {
  contract: { id: string; viewerActions: ContractAction[] };
  /** Whose contract on what, for the buttons' accessible names: "Test User's Standard contract". */
  subject: string;
}) {
  const approve = useGqlMutation(ApproveContract);
  const reject = useGqlMutation(RejectContract);
  const suspend = useGqlMutation(SuspendContract);
  const resume = useGqlMutation(ResumeContract);
  const revoke = useGqlMutation(RevokeContract);
  const [asking, setAsking] = useState<ReasonAction | null>(null);
  const [reason, setReason] = useState('');
  const reasonId = useId();
  const pending = [approve, reject, suspend, resume, revoke].some((m) => m.isPending);
  const error = [approve, reject, suspend, resume, revoke].find((m) => m.error)?.error;
  const id = contract.id;

  const run = (action: ContractAction) => {
    if (NEEDS_REASON.has(action)) {
      setAsking(action as ReasonAction);
      setReason('');
      return;
    }
    if (action === 'APPROVE') approve.mutate({ input: { id } });
    if (action === 'RESUME') resume.mutate({ input: { id } });
  };

  const submitReason = (event: FormEvent) => {
    event.preventDefault();
    const input = { id, reason: reason.trim() };
    const done = { onSuccess: () => setAsking(null) };
    if (asking === 'REJECT') reject.mutate({ input }, done);
    if (asking === 'SUSPEND') suspend.mutate({ input }, done);
    if (asking === 'REVOKE') revoke.mutate({ input }, done);
  };

  const offered = contract.viewerActions.filter((action) => VERBS[action]);
  return (
    <div className="contract-actions">
      {offered.map((action) => (
        <button
          key={action}
          type="button"
          className={action === 'REVOKE' || action === 'REJECT' ? 'danger' : 'secondary'}
          disabled={pending}
          aria-label={`${VERBS[action]} ${subject}`}
          onClick={() => run(action)}
        >
          {VERBS[action]}
        </button>
      ))}
      {asking && (
        <form onSubmit={submitReason} className="reason-form">
          <label htmlFor={reasonId}>Reason to {VERBS[asking]!.toLowerCase()} (the consumer sees it)</label>
          <input
            id={reasonId}
            required
            maxLength={MAX_REASON}
            value={reason}
            onChange={(event) => setReason(event.target.value)}
            autoFocus
          />
          <button type="submit" disabled={pending || !reason.trim()}>
            Confirm {VERBS[asking]!.toLowerCase()}
          </button>
          <button type="button" className="secondary" onClick={() => setAsking(null)}>
            Cancel
          </button>
        </form>
      )}
      <ErrorMessage error={error} />
    </div>
  );
}
