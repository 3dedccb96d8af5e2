// Placeholder until its page is built.
export function ManageModelPage() {
  return <h1>ManageModelPage</h1>;
}
