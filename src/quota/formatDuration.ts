// Durations as OpenAI writes them in x-ratelimit-reset-* headers and in
// "Please try again in …" messages: Go's time.Duration style ("1s", "6m0s",
// "1m30s", "1h2m3s", "1.5s", "20ms", "0s"), at millisecond resolution.

/**
 * Formats a non-negative duration. Fractions of a millisecond round up so a
 * client that waits the printed time is never early; negative or NaN input
 * prints "0s".
 */
export function formatDuration(ms: number): string {
  const totalMs = Number.isFinite(ms) && ms > 0 ? Math.ceil(ms) : 0;
  if (totalMs === 0) return "0s";
  if (totalMs < 1000) return `${totalMs}ms`;
  const hours = Math.floor(totalMs / 3_600_000);
  const minutes = Math.floor((totalMs % 3_600_000) / 60_000);
  const secondsMs = totalMs % 60_000;
  const seconds = formatSeconds(secondsMs);
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}

/** 1500 → "1.5s", 3000 → "3s", 1001 → "1.001s" (no trailing zeros, as Go prints). */
function formatSeconds(ms: number): string {
  const whole = Math.floor(ms / 1000);
  const frac = ms % 1000;
  if (frac === 0) return `${whole}s`;
  return `${whole}.${String(frac).padStart(3, "0").replace(/0+$/, "")}s`;
}
