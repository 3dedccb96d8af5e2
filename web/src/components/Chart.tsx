// A time-series chart (uPlot: small, fast, canvas); its accessible name gives each series' total, since a
// canvas says nothing to a screen reader.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  values: number[];
}

export function Chart({
  title,
  days,
  series,
  height = 220,
}: {
  title: string;
  /** x values as YYYY-MM-DD. */
  days: string[];
  series: Series[];
  height?: number;
}) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const xs = days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
    const colours = ['#2563eb', '#dc2626', '#16a34a', '#9333ea'];
    const plot = new uPlot(
      {
        width: Math.max(element.clientWidth, 320),
        height,
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colours[i % colours.length], width: 2 }))],
        axes: [{}, {}],
      },
      [xs, ...series.map((s) => s.values)],
      element,
    );
    return () => plot.destroy();
  }, [days, series, height]);
  const totals = series.map((s) => `${s.label} ${s.values.reduce((sum, value) => sum + value, 0)}`).join(', ');
  return (
    <figure className="chart" data-testid={`chart-${title}`} data-points={days.length}>
      <figcaption>{title}</figcaption>
      <div ref={host} role="img" aria-label={`${title}, ${days.length} days: ${totals} in all`} />
    </figure>
  );
}
