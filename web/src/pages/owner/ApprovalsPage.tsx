// Placeholder until its page is built.
export function ApprovalsPage() {
  return <h1>ApprovalsPage</h1>;
}
