// Accounts (admins): search by e-mail or name, filter by role, a page at a time; change a role after confirming.
import { useState, type FormEvent } from 'react';
import { Link } from 'react-router-dom';
import { useGql, useGqlMutation } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { InlineConfirm } from '../../components/InlineConfirm';
import { Pager, useCursor } from '../../components/Pager';
import { graphql } from '../../gql';
import type { Role, UsersQuery } from '../../gql/graphql';
import { RequireRole } from '../../components/RequireRole';

const Users = graphql(`
  query Users($filter: UserFilter, $after: String) {
    users(filter: $filter, first: 20, after: $after) {
      totalCount
      pageInfo {
        ...PagerPageInfo
      }
      edges {
        node {
          id
          email
          displayName
          role
          createdAt
        }
      }
    }
  }
`);

const SetUserRole = graphql(`
  mutation SetUserRole($input: SetUserRoleInput!) {
    setUserRole(input: $input) {
      id
      role
    }
  }
`);

const ROLES: Role[] = ['CONSUMER', 'OWNER', 'ADMIN'];
// Longer searches match nothing useful; the API limits it too.
const SEARCH_MAX = 100;

type UserRow = UsersQuery['users']['edges'][number]['node'];

function RoleChanger({ user }: { user: UserRow }) {
  const change = useGqlMutation(SetUserRole);
  const [role, setRole] = useState<Role>(user.role);
  const label = user.email ?? user.displayName;
  return (
    <>
      <label className="inline">
        <span className="visually-hidden">New role of {label}</span>
        <select value={role} onChange={(event) => setRole(event.target.value as Role)}>
          {ROLES.map((value) => (
            <option key={value} value={value}>
              {value.toLowerCase()}
            </option>
          ))}
        </select>
      </label>{' '}
      <InlineConfirm
        label={
          <>
            Change role<span className="visually-hidden"> of {label}</span>
          </>
        }
        question={`Make ${label} ${role.toLowerCase()} (now ${user.role.toLowerCase()})?`}
        confirmLabel={`Yes, make ${role.toLowerCase()}`}
        disabled={role === user.role}
        pending={change.isPending}
        onConfirm={() => change.mutate({ input: { userId: user.id, role } })}
      />
      <ErrorMessage error={change.error} />
      {change.isSuccess && (
        <p role="status" className="notice">
          {label} is now {change.data.setUserRole.role.toLowerCase()}.
        </p>
      )}
    </>
  );
}

export function AdminUsersPage() {
  return (
    <RequireRole role="ADMIN" title="Users">
      {() => <UserDirectory />}
    </RequireRole>
  );
}

function UserDirectory() {
  const [search, setSearch] = useState('');
  const [role, setRole] = useState<Role | ''>('');
  const [filter, setFilter] = useState<{ search?: string; role?: Role }>({});
  const cursor = useCursor();
  const { data, error, isPending } = useGql(Users, { filter, after: cursor.after });
  const apply = (event: FormEvent) => {
    event.preventDefault();
    setFilter({ ...(search.trim() ? { search: search.trim() } : {}), ...(role ? { role } : {}) });
    cursor.reset();
  };
  const connection = data?.users;
  return (
    <>
      <h1>Users</h1>
      <form onSubmit={apply} className="inline-form" role="search" aria-label="Users">
        <label>
          Search{' '}
          <input
            type="search"
            value={search}
            maxLength={SEARCH_MAX}
            placeholder="e-mail or name"
            onChange={(event) => setSearch(event.target.value)}
          />
        </label>
        <label>
          Role{' '}
          <select value={role} onChange={(event) => setRole(event.target.value as Role | '')}>
            <option value="">Any</option>
            {ROLES.map((value) => (
              <option key={value} value={value}>
                {value.toLowerCase()}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorMessage error={error} />
      {isPending && <p>Loading users…</p>}
      {connection && (
        <>
          <p className="muted" aria-live="polite">
            {connection.totalCount === 1 ? '1 account' : `${connection.totalCount} accounts`}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">E-mail</th>
                <th scope="col">Since</th>
                <th scope="col">Role</th>
                <th scope="col">Audit</th>
              </tr>
            </thead>
            <tbody>
              {connection.edges.map(({ node: user }) => (
                <tr key={user.id}>
                  <th scope="row">{user.displayName}</th>
                  <td>{user.email}</td>
                  <td>{new Date(user.createdAt).toLocaleDateString()}</td>
                  <td>
                    <RoleChanger user={user} />
                  </td>
                  <td>
                    <Link to={`/admin/audit?actor=${user.id}`}>
                      Actions<span className="visually-hidden"> of {user.email ?? user.displayName}</span>
                    </Link>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager pageInfo={connection.pageInfo} cursor={cursor} label="Users" />
        </>
      )}
    </>
  );
}
