// Placeholder until its page is built.
export function ApiKeysPage() {
  return <h1>ApiKeysPage</h1>;
}
