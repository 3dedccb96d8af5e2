// Placeholder until its page is built.
export function ContractsPage() {
  return <h1>ContractsPage</h1>;
}
