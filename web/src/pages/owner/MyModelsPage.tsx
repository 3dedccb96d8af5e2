// /owner/models: the signed-in owner's models (the marketplace query filtered by owner), each linked to its
// manage page.
import { Link } from 'react-router-dom';
import { useGql } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import { TASK_NAMES } from '../../models/tasks';
import { RequireRole } from '../../components/RequireRole';

const MyModels = graphql(`
  query MyModels($owner: ID!, $after: String) {
    models(filter: { owner: $owner }, first: 20, after: $after) {
      edges {
        node {
          id
          slug
          name
          task
          visibility
          versionsConnection(first: 1) {
            totalCount
            edges {
              node {
                version
              }
            }
          }
        }
      }
      pageInfo {
        ...PagerPageInfo
      }
    }
  }
`);

export function MyModelsPage() {
  return (
    <RequireRole role="OWNER" title="My models">
      {(user) => <OwnersModels owner={user.id} />}
    </RequireRole>
  );
}

function OwnersModels({ owner }: { owner: string }) {
  const cursor = useCursor();
  const { data, error, isPending } = useGql(MyModels, { owner, after: cursor.after });
  return (
    <>
      <h1>My models</h1>
      <p>
        <Link to="/owner/models/new" className="button">
          Create a model
        </Link>
      </p>
      <ErrorMessage error={error} />
      {isPending && <p>Loading your models…</p>}
      {data && data.models.edges.length === 0 && <p>You have no models yet.</p>}
      {data && data.models.edges.length > 0 && (
        <table>
          <caption className="visually-hidden">Your models</caption>
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Task</th>
              <th scope="col">Visibility</th>
              <th scope="col">Latest version</th>
              <th scope="col">Versions</th>
            </tr>
          </thead>
          <tbody>
            {data.models.edges.map(({ node }) => (
              <tr key={node.id}>
                <td>
                  <Link to={`/owner/models/${node.slug}`} aria-label={`Manage ${node.name}`}>
                    {node.name}
                  </Link>{' '}
                  <code>{node.slug}</code>
                </td>
                <td>{TASK_NAMES[node.task]}</td>
                <td>{node.visibility === 'PUBLIC' ? 'Public' : 'Private'}</td>
                <td>{node.versionsConnection.edges[0]?.node.version ?? '–'}</td>
                <td>{node.versionsConnection.totalCount}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pageInfo={data?.models.pageInfo} cursor={cursor} label="Your models" />
    </>
  );
}
