// The audit log (admins): filter by actor, action (exact, or a prefix like contract.*), target and dates, a page
// at a time, newest first; "Verify chain" recomputes the hash chain and names the first broken event.
import { useState, type FormEvent } from 'react';
import { useSearchParams } from 'react-router-dom';
import { request } from '../../api/client';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import type { AuditEventFilter, VerifyAuditChainQuery } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

const AuditEvents = graphql(`
  query AuditEvents($filter: AuditEventFilter, $after: String) {
    auditEvents(filter: $filter, first: 25, after: $after) {
      pageInfo {
        ...PagerPageInfo
      }
      edges {
        node {
          id
          chainSeq
          at
          actor {
            id
            displayName
            email
          }
          apiKeyId
          action
          targetType
          targetId
          ip
          details
        }
      }
    }
  }
`);

const VerifyAuditChain = graphql(`
  query VerifyAuditChain {
    verifyAuditChain {
      ok
      checked
      firstBrokenSeq
      reason
    }
  }
`);

// The API's limits are looser; these keep the form to what an id, an action name or a target id can be.
const ID_MAX = 64;
const ACTION_MAX = 100;

const DAY_MS = 86_400_000;

/** A filter from the form: dates are whole UTC days, `to` included (the API's `to` is exclusive). */
function filterOf(form: { actor: string; action: string; target: string; from: string; to: string }): AuditEventFilter {
  return {
    ...(form.actor.trim() ? { actor: form.actor.trim() } : {}),
    ...(form.action.trim() ? { action: form.action.trim() } : {}),
    ...(form.target.trim() ? { target: form.target.trim() } : {}),
    ...(form.from ? { from: `${form.from}T00:00:00.000Z` } : {}),
    ...(form.to ? { to: new Date(Date.parse(`${form.to}T00:00:00.000Z`) + DAY_MS).toISOString() } : {}),
  };
}

function ChainCheck() {
  const [result, setResult] = useState<VerifyAuditChainQuery['verifyAuditChain'] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState(false);
  const verify = async () => {
    setPending(true);
    setError(null);
    setResult(null);
    try {
      setResult((await request(VerifyAuditChain)).verifyAuditChain);
    } catch (failure) {
      setError(failure);
    } finally {
      setPending(false);
    }
  };
  return (
    <section aria-labelledby="chain-title">
      <h2 id="chain-title">Integrity</h2>
      <button type="button" disabled={pending} onClick={() => void verify()}>
        Verify chain
      </button>
      <ErrorMessage error={error} />
      {result && (
        <p role="status" className={result.ok ? 'notice' : 'error'}>
          {result.ok
            ? `The chain holds: ${result.checked} events checked.`
            : `The chain is broken at event ${result.firstBrokenSeq ?? '?'}: ${result.reason ?? 'no reason given'} (${result.checked} events checked).`}
        </p>
      )}
    </section>
  );
}

export function AdminAuditPage() {
  return (
    <RequireRole role="ADMIN" title="Audit log">
      {() => <AuditLog />}
    </RequireRole>
  );
}

function AuditLog() {
  // ?actor= and ?target= come from links elsewhere in the console (the users page links each account's actions).
  const [params] = useSearchParams();
  const [form, setForm] = useState(() => ({
    actor: params.get('actor') ?? '',
    action: '',
    target: params.get('target') ?? '',
    from: '',
    to: '',
  }));
  const [filter, setFilter] = useState<AuditEventFilter>(() => filterOf(form));
  const cursor = useCursor();
  const { data, error, isPending } = useGql(AuditEvents, { filter, after: cursor.after });
  const field = (name: keyof typeof form) => ({
    value: form[name],
    onChange: (event: { target: { value: string } }) =>
      setForm((current) => ({ ...current, [name]: event.target.value })),
  });
  const apply = (event: FormEvent) => {
    event.preventDefault();
    setFilter(filterOf(form));
    cursor.reset();
  };
  const connection = data?.auditEvents;
  return (
    <>
      <h1>Audit log</h1>
      <ChainCheck />
      <section aria-labelledby="events-title">
        <h2 id="events-title">Events</h2>
        <form onSubmit={apply} className="inline-form" role="search" aria-label="Audit events">
          <label>
            Actor (account id) <input maxLength={ID_MAX} {...field('actor')} />
          </label>
          <label>
            Action <input maxLength={ACTION_MAX} placeholder="contract.*" {...field('action')} />
          </label>
          <label>
            Target id <input maxLength={ID_MAX} {...field('target')} />
          </label>
          <label>
            From <input type="date" {...field('from')} />
          </label>
          <label>
            To <input type="date" {...field('to')} />
          </label>
          <button type="submit">Filter</button>
        </form>
        <ErrorMessage error={error} />
        {isPending && <p>Loading events…</p>}
        {connection && connection.edges.length === 0 && <p>No events match.</p>}
        {connection && connection.edges.length > 0 && (
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Time</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {connection.edges.map(({ node: event }) => (
                <tr key={event.id}>
                  <td>{event.chainSeq}</td>
                  <td>{new Date(event.at).toLocaleString()}</td>
                  <td>
                    {event.actor ? (
                      <>
                        {event.actor.displayName}
                        {event.actor.email && <span className="muted"> {event.actor.email}</span>}
                      </>
                    ) : (
                      <span className="muted">system</span>
                    )}
                    {event.apiKeyId && <span className="muted"> (API key)</span>}
                  </td>
                  <td>
                    <code>{event.action}</code>
                  </td>
                  <td>
                    {event.targetType} {event.targetId && <code>{event.targetId}</code>}
                  </td>
                  <td>
                    <details>
                      <summary>
                        Details<span className="visually-hidden"> of event {event.chainSeq}</span>
                      </summary>
                      <pre>{JSON.stringify(event.details, null, 2)}</pre>
                      {event.ip && <p>From {event.ip}</p>}
                    </details>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {connection && <Pager pageInfo={connection.pageInfo} cursor={cursor} label="Audit events" />}
      </section>
    </>
  );
}
