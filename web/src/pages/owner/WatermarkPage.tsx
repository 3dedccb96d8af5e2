// Placeholder until its page is built.
export function WatermarkPage() {
  return <h1>WatermarkPage</h1>;
}
