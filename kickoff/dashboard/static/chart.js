// The throughput chart: tasks finished per interval, as SVG bars drawn by hand (no
// charting library: a bar chart is a few rectangles).

import {h, s} from "./dom.js";

const W = 720;
const H = 160;
const PAD = {left: 44, right: 8, top: 10, bottom: 22};

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// series: {start, step_s, finished: [n, ...], since}
export function throughputChart(series) {
  const counts = series.finished;
  const step = series.step_s;
  const start = Date.parse(series.start);
  const top = niceMax(Math.max(1, ...counts));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const barW = plotW / Math.max(1, counts.length);
  const y = (n) => PAD.top + plotH - (n / top) * plotH;
  const bars = counts.map((n, i) => {
    const at = start + i * step * 1000;
    const rect = s("rect", {class: "bar", x: (PAD.left + i * barW + 0.5).toFixed(1),
      y: y(n).toFixed(1), width: Math.max(1, barW - 1).toFixed(1),
      height: (PAD.top + plotH - y(n)).toFixed(1)});
    rect.append(s("title", {}, `${clock(at)}: ${n} finished in ${step} s`));
    return rect;
  });
  const grid = [0, 0.5, 1].map((f) => [
    s("line", {class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f)}),
    s("text", {class: "axis", x: PAD.left - 6, y: y(top * f), "text-anchor": "end",
      "dominant-baseline": "middle"}, String(Math.round(top * f))),
  ]);
  const ticks = [0, Math.floor(counts.length / 2), counts.length - 1].map((i) =>
    s("text", {class: "axis", x: PAD.left + (i + 0.5) * barW, y: H - 6, "text-anchor": "middle"},
      clock(start + i * step * 1000)));
  const since = series.since ? Date.parse(series.since) : null;
  const partial = since && since > start ? [s("rect", {class: "unknown", x: PAD.left, y: PAD.top,
    width: Math.min(plotW, ((since - start) / (step * 1000)) * barW).toFixed(1), height: plotH})] : [];
  // The last minute up to now: the current interval (it holds now) and the five before it,
  // over the time they cover so far (50 to 60 s). Without the current one, a burst that
  // has just finished would read 0/s for up to one interval.
  const lastBins = Math.min(counts.length, Math.round(60 / step));
  const firstAt = start + (counts.length - lastBins) * step * 1000;
  const now = series.now ? Date.parse(series.now) : firstAt + lastBins * step * 1000;
  const covered = Math.max(1, (now - firstAt) / 1000);
  const rate = counts.slice(-lastBins).reduce((a, b) => a + b, 0) / covered;
  return h("figure", {class: "chart"},
    s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "tasks finished over time",
      preserveAspectRatio: "none"}, partial, grid, bars, ticks),
    h("figcaption", {}, `tasks finished per ${step} s; last minute: `,
      h("strong", {"data-testid": "rate"}, `${rate.toFixed(rate < 10 ? 1 : 0)}/s`),
      partial.length ? h("span", {class: "muted"}, " (shaded: before the log's start or the part of it read)") : ""));
}
