// The viewer's API keys: create one (name and scopes; its secret is shown once, held only in this page's state,
// so it is gone once the person leaves), list them with their use, and revoke one after confirming.
import { useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { request } from '../../api/client';
import { useGql, useGqlMutation } from '../../api/hooks';
import { CopyButton } from '../../components/CopyButton';
import { ErrorMessage } from '../../components/ErrorMessage';
import { InlineConfirm } from '../../components/InlineConfirm';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import type { ApiScope, CreateApiKeyMutation } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

const MyApiKeys = graphql(`
  query MyApiKeys($after: String) {
    myApiKeysConnection(first: 20, after: $after) {
      totalCount
      pageInfo {
        ...PagerPageInfo
      }
      edges {
        node {
          id
          name
          prefix
          scopes
          createdAt
          lastUsedAt
          revokedAt
        }
      }
    }
  }
`);

const CreateApiKey = graphql(`
  mutation CreateApiKey($input: CreateApiKeyInput!) {
    createApiKey(input: $input) {
      secret
      apiKey {
        id
        name
      }
    }
  }
`);

const RevokeApiKey = graphql(`
  mutation RevokeApiKey($input: RevokeApiKeyInput!) {
    revokeApiKey(input: $input) {
      id
    }
  }
`);

const SCOPES: { scope: ApiScope; meaning: string }[] = [
  { scope: 'PREDICT', meaning: 'call models under your contracts' },
  { scope: 'READ_USAGE', meaning: 'read usage and statements' },
  { scope: 'MANAGE_MODELS', meaning: 'publish and manage your models' },
  { scope: 'DOWNLOAD', meaning: 'download model files where a licence allows' },
];

// The API's own limit on a key's name.
const NAME_MAX = 100;

function when(value: string | null | undefined, never: string): string {
  return value ? new Date(value).toLocaleString() : never;
}

function CreateKeyForm() {
  // Not useGqlMutation: React Query keeps a mutation's answer in its cache for minutes after the page is left,
  // and the secret must live only as long as this form.
  const queryClient = useQueryClient();
  const [created, setCreated] = useState<CreateApiKeyMutation['createApiKey'] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState(false);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<ApiScope[]>(['PREDICT']);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setPending(true);
    setError(null);
    setCreated(null);
    try {
      setCreated((await request(CreateApiKey, { input: { name: name.trim(), scopes } })).createApiKey);
      setName('');
      setScopes(['PREDICT']);
      await queryClient.invalidateQueries();
    } catch (failure) {
      setError(failure);
    } finally {
      setPending(false);
    }
  };
  return (
    <section aria-labelledby="create-key-title">
      <h2 id="create-key-title">Create a key</h2>
      <form className="key-form" onSubmit={(event) => void submit(event)}>
        <label>
          Name{' '}
          <input
            value={name}
            required
            maxLength={NAME_MAX}
            onChange={(event) => setName(event.target.value)}
            placeholder="e.g. production app"
          />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {SCOPES.map(({ scope, meaning }) => (
            <label key={scope}>
              <input
                type="checkbox"
                checked={scopes.includes(scope)}
                onChange={(event) =>
                  setScopes((current) =>
                    event.target.checked ? [...current, scope] : current.filter((s) => s !== scope),
                  )
                }
              />{' '}
              {scope} <span className="muted">({meaning})</span>
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={pending || scopes.length === 0 || !name.trim()}>
          Create key
        </button>
      </form>
      <ErrorMessage error={error} />
      {created && (
        <div role="status" className="secret-once">
          <p>
            <strong>Key “{created.apiKey.name}” created.</strong> Copy its secret now: it is shown only this once and
            cannot be shown again.
          </p>
          <p>
            <code data-testid="api-key-secret">{created.secret}</code>
          </p>
          <p>
            <CopyButton text={created.secret} label="Copy secret" />{' '}
            <button type="button" className="secondary" onClick={() => setCreated(null)}>
              I have saved it
            </button>
          </p>
        </div>
      )}
    </section>
  );
}

export function ApiKeysPage() {
  return (
    <RequireRole role="SIGNED_IN" title="API keys">
      {() => <ViewersApiKeys />}
    </RequireRole>
  );
}

function ViewersApiKeys() {
  const cursor = useCursor();
  const { data, error, isPending } = useGql(MyApiKeys, { after: cursor.after });
  const revoke = useGqlMutation(RevokeApiKey);
  const connection = data?.myApiKeysConnection;
  return (
    <>
      <h1>API keys</h1>
      <CreateKeyForm />
      <section aria-labelledby="keys-title">
        <h2 id="keys-title">Your keys</h2>
        <ErrorMessage error={error ?? revoke.error} />
        {isPending && <p>Loading keys…</p>}
        {connection && connection.totalCount === 0 && <p>No keys yet.</p>}
        {connection && connection.edges.length > 0 && (
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {connection.edges.map(({ node: key }) => (
                <tr key={key.id}>
                  <th scope="row">{key.name}</th>
                  <td>
                    <code>{key.prefix}…</code>
                  </td>
                  <td>
                    {key.scopes.map((scope) => (
                      <span key={scope} className="tag">
                        {scope}
                      </span>
                    ))}
                  </td>
                  <td>{when(key.createdAt, '')}</td>
                  <td>{when(key.lastUsedAt, 'Never')}</td>
                  <td>
                    {key.revokedAt ? (
                      `Revoked ${when(key.revokedAt, '')}`
                    ) : (
                      <InlineConfirm
                        label={
                          <>
                            Revoke<span className="visually-hidden"> {key.name}</span>
                          </>
                        }
                        question={`Revoke “${key.name}”? Apps using it stop working at once.`}
                        confirmLabel="Yes, revoke"
                        pending={revoke.isPending}
                        onConfirm={() => revoke.mutate({ input: { id: key.id } })}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {connection && <Pager pageInfo={connection.pageInfo} cursor={cursor} label="Keys" />}
      </section>
    </>
  );
}
