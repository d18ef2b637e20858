// Daily budgets roll over at 00:00 UTC, whatever the server's time zone.

const MS_PER_DAY = 86_400_000;

/** "YYYY-MM-DD" of the UTC day containing `nowMs`. */
export function utcDay(nowMs: number): string {
  return new Date(nowMs).toISOString().slice(0, 10);
}

/** Milliseconds from `nowMs` to the next 00:00 UTC (in (0, 1 day]). */
export function msUntilUtcMidnight(nowMs: number): number {
  return MS_PER_DAY - (((nowMs % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY);
}
