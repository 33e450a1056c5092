// A hand-written SVG line plot of recall (x) against queries per second (y, log10), one line per
// series, for the ann-benchmarks style recall/QPS trade-off curve. No dependencies. The x axis
// counts "nines" (-log10(1 - recall)), like ann-benchmarks' logit scale, so the region between
// 0.99 and 0.9999 where HNSW indexes differ is not squeezed against the right edge.

export interface Series {
  name: string;
  dashed: boolean;
  points: { recall: number; qps: number }[];
}

const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * Renders the plot; `colorKey` maps series to colours so one library keeps one colour, and
 * `recallResolution` (1 / (queries * k)) caps recall 1.0 at the finest measurable step.
 */
export function recallQpsSvg(title: string, subtitle: string, series: Series[], colorKey: (s: Series) => string, recallResolution: number): string {
  const width = 760, height = 500;
  const left = 70, right = 200, top = 56, bottom = 50;
  const plotW = width - left - right, plotH = height - top - bottom;
  const all = series.flatMap((s) => s.points).filter((p) => p.qps > 0);
  if (all.length === 0) throw new Error("recallQpsSvg: no points to plot");
  const nines = (recall: number) => -Math.log10(Math.max(1 - recall, recallResolution / 2));
  // Ticks finer than the measurable resolution would crowd the right edge, where recall 1 sits.
  const xTicks = [0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999]
    .filter((t) => 1 - t >= recallResolution * 1.5);
  const minRecall = Math.min(...all.map((p) => p.recall));
  const xMin = nines(xTicks.filter((t) => t <= minRecall).at(-1) ?? 0);
  const xMax = nines(1);
  const yMin = Math.floor(Math.log10(Math.min(...all.map((p) => p.qps))));
  const yMax = Math.ceil(Math.log10(Math.max(...all.map((p) => p.qps))) + 1e-9);
  const x = (recall: number) => left + ((nines(recall) - xMin) / (xMax - xMin)) * plotW;
  const y = (qps: number) => top + plotH - ((Math.log10(qps) - yMin) / (yMax - yMin || 1)) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`);
  out.push(`<text x="${left}" y="40" fill="#555">${escape(subtitle)}</text>`);
  // Labels closer than 44 px to the previous one (or to the "1" at the right edge) are skipped.
  let lastLabel = -Infinity;
  for (const t of [...xTicks.filter((t) => nines(t) >= xMin - 1e-9 && x(1) - x(t) >= 44), 1]) {
    if (x(t) - lastLabel < 44) continue;
    lastLabel = x(t);
    const px = x(t).toFixed(1);
    out.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${px}" y="${top + plotH + 16}" text-anchor="middle">${t}</text>`);
  }
  // Powers of ten get labels; 2x and 5x get labelled grid lines too when the range is narrow.
  const minors = yMax - yMin <= 2 ? [1, 2, 5] : [1];
  for (let e = yMin; e <= yMax; e++) {
    for (const m of minors) {
      const v = m * 10 ** e;
      if (Math.log10(v) > yMax + 1e-9) continue;
      const py = y(v).toFixed(1);
      out.push(`<line x1="${left}" y1="${py}" x2="${left + plotW}" y2="${py}" stroke="${m === 1 ? "#d0d0d0" : "#eeeeee"}"/>`);
      out.push(`<text x="${left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${v.toLocaleString("en-US")}</text>`);
    }
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${left + plotW / 2}" y="${height - 10}" text-anchor="middle">recall@k (axis spaced by nines: -log10(1 - recall))</text>`);
  out.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">queries per second (log scale)</text>`);
  const keys = [...new Set(series.map(colorKey))];
  series.forEach((s, i) => {
    const color = COLORS[keys.indexOf(colorKey(s)) % COLORS.length];
    const points = [...s.points].filter((p) => p.qps > 0).sort((a, b) => a.recall - b.recall);
    const path = points.map((p) => `${x(p.recall).toFixed(1)},${y(p.qps).toFixed(1)}`).join(" ");
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    out.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const p of points) out.push(`<circle cx="${x(p.recall).toFixed(1)}" cy="${y(p.qps).toFixed(1)}" r="2.5" fill="${color}"/>`);
    const ly = top + 10 + i * 20;
    out.push(`<line x1="${left + plotW + 14}" y1="${ly}" x2="${left + plotW + 40}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${left + plotW + 46}" y="${ly}" dominant-baseline="middle">${escape(s.name)}</text>`);
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}
