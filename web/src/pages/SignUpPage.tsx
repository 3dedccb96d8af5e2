// Placeholder until its page is built.
export function SignUpPage() {
  return <h1>SignUpPage</h1>;
}
