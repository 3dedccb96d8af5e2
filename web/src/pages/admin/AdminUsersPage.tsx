// Placeholder until its page is built.
export function AdminUsersPage() {
  return <h1>AdminUsersPage</h1>;
}
