// Placeholder until its page is built.
export function ModelPage() {
  return <h1>ModelPage</h1>;
}
