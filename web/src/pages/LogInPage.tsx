// Placeholder until its page is built.
export function LogInPage() {
  return <h1>LogInPage</h1>;
}
