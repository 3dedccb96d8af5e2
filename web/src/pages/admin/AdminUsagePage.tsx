// Placeholder until its page is built.
export function AdminUsagePage() {
  return <h1>AdminUsagePage</h1>;
}
