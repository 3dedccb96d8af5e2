// Plain-text tables for the bench output.

export type Cell = string | number;

export function printTable(title: string, header: readonly string[], rows: readonly (readonly Cell[])[]): void {
  const cells = [header, ...rows].map((row) => row.map(String));
  const widths = header.map((_, column) => Math.max(...cells.map((row) => row[column]?.length ?? 0)));
  const line = (row: string[]) =>
    `| ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ')} |`;
  console.log(`\n${title}\n`);
  console.log(line(cells[0]!));
  console.log(`|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const row of cells.slice(1)) console.log(line(row));
}

export const percent = (value: number, digits = 2) => `${(100 * value).toFixed(digits)}%`;
export const points = (value: number) => `${value >= 0 ? '+' : ''}${(100 * value).toFixed(2)} pp`;
export const seconds = (ms: number) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`);
