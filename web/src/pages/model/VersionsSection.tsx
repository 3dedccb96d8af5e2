// The model's versions, highest first, a page at a time, with their aliases and life-cycle marks.
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';

const PAGE_SIZE = 10;

/** A version as every list of versions shows it; the owner's table adds the watermark report. */
export const ModelVersionListing = graphql(`
  fragment ModelVersionListing on ModelVersion {
    id
    version
    status
    aliases
    changelog
    sizeBytes
    createdAt
  }
`);

const ModelVersions = graphql(`
  query ModelVersions($slug: String!, $first: Int, $after: String) {
    model(slug: $slug) {
      id
      versionsConnection(first: $first, after: $after) {
        totalCount
        edges {
          node {
            ...ModelVersionListing
          }
        }
        pageInfo {
          ...PagerPageInfo
        }
      }
    }
  }
`);

export function VersionsSection({ slug }: { slug: string }) {
  const cursor = useCursor();
  const { data, error } = useGql(ModelVersions, { slug, first: PAGE_SIZE, after: cursor.after });
  const connection = data?.model?.versionsConnection;
  return (
    <section aria-labelledby="versions">
      <h2 id="versions">Versions{connection ? ` (${connection.totalCount})` : ''}</h2>
      <ErrorMessage error={error} />
      {connection && connection.edges.length === 0 && <p>No version has been published yet.</p>}
      {connection && connection.edges.length > 0 && (
        <table className="versions">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Aliases</th>
              <th scope="col">Status</th>
              <th scope="col">Published</th>
              <th scope="col">Changes</th>
            </tr>
          </thead>
          <tbody>
            {connection.edges.map(({ node }) => (
              <tr key={node.id}>
                <th scope="row">{node.version}</th>
                <td>
                  {node.aliases.map((alias) => (
                    <span key={alias} className="tag">
                      {alias}
                    </span>
                  ))}
                </td>
                <td>
                  {node.status === 'ACTIVE' ? (
                    'Active'
                  ) : (
                    <span className={`version-mark version-${node.status.toLowerCase()}`}>{node.status}</span>
                  )}
                </td>
                <td>{new Date(node.createdAt).toLocaleDateString()}</td>
                <td>{node.changelog}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pageInfo={connection?.pageInfo} cursor={cursor} label="Versions" />
    </section>
  );
}
