// Placeholder until its page is built.
export function NewModelPage() {
  return <h1>NewModelPage</h1>;
}
