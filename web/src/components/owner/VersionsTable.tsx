// A model's versions for its owner: status, aliases, the owner mark's cost, and the life-cycle actions (point an
// alias, deprecate, archive after a confirmation: an archived version stops serving for good).
import { useId, useState, type FormEvent } from 'react';
import { useGql, useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import type { OwnerModelVersionsQuery } from '../../gql/graphql';
import { ErrorMessage } from '../ErrorMessage';
import { InlineConfirm } from '../InlineConfirm';
import { Pager, useCursor } from '../Pager';

const OwnerModelVersions = graphql(`
  query OwnerModelVersions($slug: String!, $after: String) {
    model(slug: $slug) {
      id
      versionsConnection(first: 20, after: $after) {
        totalCount
        edges {
          node {
            ...ModelVersionListing
            watermark {
              marked
              bits
              threshold
              relativeChange
              agreement
              accuracyBefore
              accuracyAfter
            }
          }
        }
        pageInfo {
          ...PagerPageInfo
        }
      }
    }
  }
`);

const SetAlias = graphql(`
  mutation SetOwnerVersionAlias($input: SetVersionAliasInput!) {
    setVersionAlias(input: $input) {
      name
      version {
        id
        version
      }
    }
  }
`);

const Deprecate = graphql(`
  mutation DeprecateOwnerVersion($input: DeprecateModelVersionInput!) {
    deprecateModelVersion(input: $input) {
      id
      status
    }
  }
`);

const Archive = graphql(`
  mutation ArchiveOwnerVersion($input: ArchiveModelVersionInput!) {
    archiveModelVersion(input: $input) {
      id
      status
    }
  }
`);

type Version = NonNullable<OwnerModelVersionsQuery['model']>['versionsConnection']['edges'][number]['node'];

const STATUS_NAMES = { ACTIVE: 'Active', DEPRECATED: 'Deprecated', ARCHIVED: 'Archived' } as const;

function watermarkStatus(report: Version['watermark']): string {
  if (!report.marked) return 'Not marked (opted out)';
  const parts = [`Marked, ${report.bits ?? '?'} bits (match from ${report.threshold ?? '?'})`];
  if (report.relativeChange != null) parts.push(`weights changed ${(report.relativeChange * 100).toFixed(2)}%`);
  if (report.agreement != null) parts.push(`${(report.agreement * 100).toFixed(1)}% of predictions unchanged`);
  if (report.accuracyBefore != null && report.accuracyAfter != null) {
    parts.push(`accuracy ${(report.accuracyBefore * 100).toFixed(1)}% → ${(report.accuracyAfter * 100).toFixed(1)}%`);
  }
  return parts.join('; ');
}

/** Alias names as the API takes them (`latest` is the server's own and cannot be pointed). */
const ALIAS_PATTERN = '[a-z][a-z0-9\\-]{0,31}';

export function VersionsTable({ slug }: { slug: string }) {
  const cursor = useCursor();
  const { data, error, isPending } = useGql(OwnerModelVersions, { slug, after: cursor.after });
  const setAlias = useGqlMutation(SetAlias);
  const deprecate = useGqlMutation(Deprecate);
  const archive = useGqlMutation(Archive);
  const [alias, setAliasName] = useState('stable');
  const [aliasVersion, setAliasVersion] = useState('');
  const [notice, setNotice] = useState('');
  const id = useId();
  const versions = data?.model?.versionsConnection;
  const serving = versions?.edges.filter(({ node }) => node.status !== 'ARCHIVED') ?? [];
  const pending = setAlias.isPending || deprecate.isPending || archive.isPending;

  const pointAlias = (event: FormEvent) => {
    event.preventDefault();
    const version = aliasVersion || serving[0]?.node.version;
    if (!version) return;
    setAlias.mutate(
      { input: { model: slug, alias: alias.trim(), version } },
      { onSuccess: ({ setVersionAlias }) => setNotice(`${setVersionAlias.name} now points at ${version}.`) },
    );
  };

  return (
    <section aria-labelledby="versions-title">
      <h2 id="versions-title">Versions</h2>
      <ErrorMessage error={error ?? setAlias.error ?? deprecate.error ?? archive.error} />
      {isPending && <p>Loading versions…</p>}
      {versions && versions.totalCount === 0 && <p>No versions yet: publish the first one below.</p>}
      {versions && versions.edges.length > 0 && (
        <table>
          <caption className="visually-hidden">Versions of this model</caption>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Status</th>
              <th scope="col">Aliases</th>
              <th scope="col">Published</th>
              <th scope="col">Watermark</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {versions.edges.map(({ node: version }) => (
              <tr key={version.id}>
                <td>
                  {version.version}
                  {version.changelog && <div className="muted">{version.changelog}</div>}
                </td>
                <td>{STATUS_NAMES[version.status]}</td>
                <td>
                  {version.aliases.map((name) => (
                    <span key={name} className="tag">
                      {name}
                    </span>
                  ))}
                </td>
                <td>{new Date(version.createdAt).toLocaleDateString()}</td>
                <td>{watermarkStatus(version.watermark)}</td>
                <td>
                  {version.status === 'ACTIVE' && (
                    <button
                      type="button"
                      className="secondary"
                      disabled={pending}
                      aria-label={`Deprecate version ${version.version}`}
                      onClick={() =>
                        deprecate.mutate(
                          { input: { model: slug, version: version.version } },
                          { onSuccess: () => setNotice(`Version ${version.version} deprecated.`) },
                        )
                      }
                    >
                      Deprecate
                    </button>
                  )}{' '}
                  {version.status !== 'ARCHIVED' && (
                    <InlineConfirm
                      label={
                        <>
                          Archive<span className="visually-hidden"> version {version.version}</span>
                        </>
                      }
                      question={`Archive ${version.version}? It stops serving for good.`}
                      confirmLabel="Yes, archive"
                      pending={pending}
                      onConfirm={() =>
                        archive.mutate(
                          { input: { model: slug, version: version.version } },
                          { onSuccess: () => setNotice(`Version ${version.version} archived.`) },
                        )
                      }
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pageInfo={versions?.pageInfo} cursor={cursor} label="Versions" />
      {serving.length > 0 && (
        <form onSubmit={pointAlias} className="inline-form">
          <label htmlFor={`${id}-alias`}>Alias</label>
          <input
            id={`${id}-alias`}
            required
            maxLength={32}
            pattern={ALIAS_PATTERN}
            value={alias}
            onChange={(event) => setAliasName(event.target.value)}
          />
          <label htmlFor={`${id}-alias-version`}>points at version</label>
          <select
            id={`${id}-alias-version`}
            value={aliasVersion || serving[0]!.node.version}
            onChange={(event) => setAliasVersion(event.target.value)}
          >
            {serving.map(({ node }) => (
              <option key={node.id} value={node.version}>
                {node.version}
              </option>
            ))}
          </select>
          <button type="submit" disabled={pending}>
            Set alias
          </button>
        </form>
      )}
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
    </section>
  );
}
