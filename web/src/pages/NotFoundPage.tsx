// Placeholder until its page is built.
export function NotFoundPage() {
  return <h1>NotFoundPage</h1>;
}
