// A confusion matrix as a heat map that is still a table: every count is text under its row and column
// headers (screen readers read it as a table), and the cell's colour shows its share of the true class's row.

const LIGHT = [248, 250, 252];
const DARK = [30, 58, 138];

/** WCAG relative luminance of an sRGB colour. */
function luminance([r, g, b]: number[]): number {
  const linear = (c: number) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * linear(r!) + 0.7152 * linear(g!) + 0.0722 * linear(b!);
}

/** The cell's colour for a share in [0, 1], and black or white text, whichever keeps a 4.5:1 contrast. */
function cellColours(share: number): { background: string; color: string } {
  const rgb = LIGHT.map((light, i) => Math.round(light + (DARK[i]! - light) * share));
  return { background: `rgb(${rgb.join(',')})`, color: luminance(rgb) > 0.179 ? '#111827' : '#ffffff' };
}

export function ConfusionMatrix({ labels, matrix }: { labels: string[]; matrix: number[][] }) {
  return (
    <div className="confusion-matrix">
      <table>
        <caption>
          Confusion matrix: rows are the true class, columns the predicted class; the darker a cell, the larger its
          share of the true class.
        </caption>
        <thead>
          <tr>
            <td />
            {labels.map((label) => (
              <th key={label} scope="col">
                <span className="visually-hidden">predicted </span>
                {label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, i) => {
            const total = row.reduce((a, b) => a + b, 0);
            return (
              <tr key={labels[i] ?? i}>
                <th scope="row">
                  <span className="visually-hidden">true </span>
                  {labels[i]}
                </th>
                {row.map((count, j) => (
                  <td key={labels[j] ?? j} style={cellColours(total ? count / total : 0)}>
                    {count}
                  </td>
                ))}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
