// Placeholder until its page is built.
export function MyModelsPage() {
  return <h1>MyModelsPage</h1>;
}
