// How the CLI talks: tables for people, JSON (--json) for scripts, and exit codes (0 ok, 1 error, 2 usage).

/** A mistake in the command line itself (exit code 2). */
export class UsageError extends Error {}

/** Columns padded to their widest cell; null and undefined print as "-". */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (cell == null ? '-' : String(cell))))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
