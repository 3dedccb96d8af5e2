// Placeholder until its page is built.
export function MarketplacePage() {
  return <h1>MarketplacePage</h1>;
}
