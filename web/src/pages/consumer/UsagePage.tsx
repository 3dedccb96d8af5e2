// Placeholder until its page is built.
export function UsagePage() {
  return <h1>UsagePage</h1>;
}
