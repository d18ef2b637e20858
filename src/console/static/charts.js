// Charts as inline SVG: stacked bars over time buckets, sparklines for live
// series, a grid of KV slots. The layout functions are pure (plain numbers in,
// rectangles and points out; unit-tested under node); draw* turn them into SVG.
import { s } from "./dom.js";

/** A "nice" axis step (1, 2 or 5 × 10^n) so that about `count` steps cover `max`. */
export function niceStep(max, count = 4) {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/** The axis ticks from 0 through the first nice value ≥ max. */
export function ticks(max, count = 4) {
  const step = niceStep(max, count);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const out = [];
  for (let v = 0; v <= top + step / 2; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * Rectangles of a stacked bar chart. buckets: [{ label, values: { series: n } }];
 * series: the stacking order. Returns { top, rects: [{ x, y, width, height, series, bucket, value }] }
 * in a plot area of `width` × `height` (y grows downwards, as in SVG).
 */
export function stackedBarLayout(buckets, series, { width, height, gap = 0.2 }) {
  const totals = buckets.map((b) => series.reduce((sum, name) => sum + (b.values[name] ?? 0), 0));
  const axis = ticks(Math.max(0, ...totals));
  const top = axis[axis.length - 1];
  const slot = buckets.length > 0 ? width / buckets.length : width;
  const barWidth = Math.max(1, slot * (1 - gap));
  const rects = [];
  buckets.forEach((b, i) => {
    let y = height;
    for (const name of series) {
      const value = b.values[name] ?? 0;
      if (value <= 0) continue;
      const h = (value / top) * height;
      y -= h;
      rects.push({ x: i * slot + (slot - barWidth) / 2, y, width: barWidth, height: h, series: name, bucket: i, value });
    }
  });
  return { top, axis, rects };
}

/** Points of a line through `values` (oldest first) in `width` × `height`; max: the top of the scale. */
export function sparklinePoints(values, { width, height, max }) {
  const top = max ?? Math.max(0, ...values);
  const n = values.length;
  return values.map((v, i) => ({ x: n <= 1 ? width : (i / (n - 1)) * width, y: top > 0 ? height - (Math.max(0, v) / top) * height : height }));
}

const MARGIN = { left: 44, right: 8, top: 8, bottom: 22 };

/**
 * A stacked bar chart. series: [{ key, label }] in stacking order (colours by
 * position); format: the value formatter of the axis and the tooltips.
 */
export function drawStackedBars(buckets, series, { width = 640, height = 200, format = String, title }) {
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const keys = series.map((x) => x.key);
  const { top, axis, rects } = stackedBarLayout(buckets, keys, { width: plotW, height: plotH });
  const y = (v) => MARGIN.top + plotH - (v / top) * plotH;
  const labelEvery = Math.max(1, Math.ceil(buckets.length / 8));
  return s(
    "svg",
    { class: "chart bars", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title ?? "chart" },
    title ? s("title", {}, title) : null,
    axis.map((v) =>
      s(
        "g",
        { class: "grid" },
        s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }),
        s("text", { x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)),
      ),
    ),
    rects.map((r) =>
      s(
        "rect",
        {
          class: `series-${keys.indexOf(r.series) % 8}`,
          x: MARGIN.left + r.x,
          y: MARGIN.top + r.y,
          width: r.width,
          height: Math.max(0.5, r.height),
          "data-series": r.series,
        },
        s("title", {}, `${buckets[r.bucket].label} · ${series.find((x) => x.key === r.series)?.label ?? r.series}: ${format(r.value)}`),
      ),
    ),
    buckets.map((b, i) =>
      i % labelEvery === 0
        ? s(
            "text",
            { class: "axis-label", x: MARGIN.left + (i + 0.5) * (plotW / Math.max(1, buckets.length)), y: height - 6, "text-anchor": "middle" },
            b.label,
          )
        : null,
    ),
  );
}

/** The legend of a chart's series, in the same colours. */
export function drawLegend(series) {
  return s(
    "svg",
    { class: "legend", viewBox: `0 0 ${series.length * 150} 16`, width: series.length * 150, height: 16 },
    series.map((x, i) =>
      s("g", {}, s("rect", { class: `series-${i % 8}`, x: i * 150, y: 3, width: 10, height: 10 }), s("text", { x: i * 150 + 14, y: 12 }, x.label)),
    ),
  );
}

/** A sparkline of a live series, its last value written beside it. */
export function drawSparkline(values, { width = 220, height = 40, max, label = "" } = {}) {
  const pts = sparklinePoints(values, { width, height: height - 4, max });
  const path = pts.map((p, i) => `${i === 0 ? "M" : "L"}${p.x.toFixed(1)},${(p.y + 2).toFixed(1)}`).join(" ");
  return s(
    "svg",
    { class: "chart sparkline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label },
    s("title", {}, label),
    s("line", { class: "baseline", x1: 0, x2: width, y1: height - 2, y2: height - 2 }),
    pts.length > 0 ? s("path", { d: path }) : null,
  );
}

/** One square per KV slot: busy ones filled. */
export function drawSlots(busy, idle, { size = 18, gap = 4, perRow = 16 } = {}) {
  const total = busy + idle;
  const rows = Math.max(1, Math.ceil(total / perRow));
  const cols = Math.min(perRow, Math.max(1, total));
  return s(
    "svg",
    {
      class: "chart slots",
      viewBox: `0 0 ${cols * (size + gap)} ${rows * (size + gap)}`,
      width: cols * (size + gap),
      height: rows * (size + gap),
      role: "img",
      "aria-label": `${busy} of ${total} slots busy`,
    },
    s("title", {}, `${busy} of ${total} slots busy`),
    Array.from({ length: total }, (_, i) =>
      s("rect", {
        class: i < busy ? "slot busy" : "slot idle",
        x: (i % perRow) * (size + gap),
        y: Math.floor(i / perRow) * (size + gap),
        width: size,
        height: size,
        rx: 3,
      }),
    ),
  );
}

/** A horizontal meter of used / limit (limit null: no bar, just the figure). */
export function drawMeter(used, limit, { width = 160, height = 10 } = {}) {
  if (limit === null || limit === undefined || !(limit > 0)) return null;
  const ratio = Math.min(1, used / limit);
  return s(
    "svg",
    { class: "chart meter", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `${Math.round(ratio * 100)}% of the limit` },
    s("rect", { class: "meter-track", x: 0, y: 0, width, height, rx: 3 }),
    s("rect", { class: ratio >= 0.9 ? "meter-fill hot" : "meter-fill", x: 0, y: 0, width: Math.max(ratio > 0 ? 2 : 0, ratio * width), height, rx: 3 }),
  );
}
