// Number and time formatting, the same on every view.

export const int = (n) => (n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US"));

/** 1234567 → "1.2M", 950 → "950". */
export function compact(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  const a = Math.abs(n);
  if (a >= 1e9) return `${trim(n / 1e9)}G`;
  if (a >= 1e6) return `${trim(n / 1e6)}M`;
  if (a >= 1e3) return `${trim(n / 1e3)}k`;
  return trim(n);
}
const trim = (x) => (Math.abs(x) >= 100 || Number.isInteger(x) ? String(Math.round(x)) : x.toFixed(1).replace(/\.0$/, ""));

/** Dollars: cents, or four decimals for the fractions of a cent that small models cost. */
export const usd = (v) => (v === null || v === undefined ? "—" : `$${v < 0.01 && v > 0 ? v.toFixed(4) : v.toFixed(2)}`);

/** Unix seconds → "2026-12-07 23:41:05 UTC". */
export function utc(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return `${new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** A bucket's start as a short axis label for its width. */
export function bucketLabel(seconds, width) {
  const iso = new Date(seconds * 1000).toISOString();
  if (width === "1d") return iso.slice(5, 10);
  return iso.slice(11, 16);
}

export const limit = (v) => (v === null || v === undefined ? "∞" : Array.isArray(v) ? v.join(", ") : compact(v));
