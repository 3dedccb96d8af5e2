// A classifier's top labels as bars, with each score also as text (the bar alone says nothing to a screen reader).
export function TopKBars({ scores }: { scores: { label: string; score: number }[] }) {
  return (
    <ol className="top-k" aria-label="Top labels">
      {scores.map(({ label, score }) => (
        <li key={label}>
          <span className="top-k-label">{label}</span>
          <span className="bar" aria-hidden="true">
            <span style={{ width: `${Math.max(0, Math.min(1, score)) * 100}%` }} />
          </span>
          <span className="top-k-score">{(score * 100).toFixed(1)}%</span>
        </li>
      ))}
    </ol>
  );
}
