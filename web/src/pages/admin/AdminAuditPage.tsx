// Placeholder until its page is built.
export function AdminAuditPage() {
  return <h1>AdminAuditPage</h1>;
}
