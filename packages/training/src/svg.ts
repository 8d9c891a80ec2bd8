/** A dependency-free SVG line chart of training and held-out loss. */

/** One series of (step, loss) points. */
export interface LossSeries {
  /** Legend label. */
  label: string;
  /** CSS colour. */
  color: string;
  /** Points. */
  points: [number, number][];
}

/** Renders the series as a 720×400 SVG document. */
export function lossCurveSvg(series: LossSeries[], title = "loss"): string {
  const W = 720;
  const H = 400;
  const m = { l: 60, r: 20, t: 30, b: 40 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(1, ...xs);
  const y0 = all.length ? Math.min(...ys) : 0;
  const y1 = all.length ? Math.max(...ys) : 1;
  const yr = y1 - y0 || 1;
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((y - y0) / yr) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle">${title}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (yr * i) / 4;
    parts.push(`<text x="${m.l - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(2)}</text>`);
    const x = x0 + ((x1 - x0) * i) / 4;
    parts.push(`<text x="${px(x)}" y="${H - m.b + 16}" text-anchor="middle">${Math.round(x)}</text>`);
  }
  parts.push(`<text x="${W / 2}" y="${H - 6}" text-anchor="middle">step</text>`);
  series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (pts.length) {
      const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join("");
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    }
    parts.push(`<text x="${W - m.r - 120}" y="${m.t + 16 * (i + 1)}" fill="${s.color}">${s.label}</text>`);
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
