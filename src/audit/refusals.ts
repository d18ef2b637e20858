// Refused authentications are audited, but a flood of bad keys must not fill
// the disk. Time is cut into fixed windows; in each, a source address has its
// first `perAddress` refusals recorded one by one, and all addresses together
// at most `total` (so many addresses, say an IPv6 block, cannot multiply the
// bound). The rest are counted, and when the window ends one summary record
// says how many were suppressed and from where. At most total + 1 records per
// window, whatever the attack; recorded + suppressed = refusals, exactly.
// Pure: the caller brings the clock and writes the records.

export interface RefusalLimits {
  /** Refusals recorded one by one per source address per window. */
  perAddress: number;
  /** Refusals recorded one by one over all addresses per window. */
  total: number;
  windowMs: number;
}

/** Addresses whose counts a window keeps; past it a new address is only counted in the total. */
export const MAX_TRACKED_ADDRESSES = 10_000;
/** Addresses a summary names (the most suppressed first); the rest are summed up. */
export const SUMMARY_TOP_ADDRESSES = 10;

export interface RefusalSummary {
  windowStartMs: number;
  windowEndMs: number;
  /** Refusals recorded one by one in the window. */
  recorded: number;
  /** Refusals not recorded one by one. */
  suppressed: number;
  /** The addresses with the most suppressed refusals, most first. */
  topAddresses: Array<{ ipAddress: string; suppressed: number }>;
  /** Suppressed refusals from addresses not in topAddresses. */
  otherSuppressed: number;
}

export class RefusalWindow {
  private startMs: number;
  private recorded = 0;
  private readonly seen = new Map<string, { recorded: number; suppressed: number }>();
  private untrackedSuppressed = 0;

  constructor(
    private readonly limits: RefusalLimits,
    nowMs: number,
  ) {
    this.startMs = nowMs;
  }

  get windowEndMs(): number {
    return this.startMs + this.limits.windowMs;
  }

  /** Whether this refusal is recorded in full (true) or only counted (false). Call roll() first when the window may be over. */
  admit(ipAddress: string): boolean {
    let counts = this.seen.get(ipAddress);
    if (!counts && this.seen.size < MAX_TRACKED_ADDRESSES) this.seen.set(ipAddress, (counts = { recorded: 0, suppressed: 0 }));
    if (!counts) {
      this.untrackedSuppressed++;
      return false;
    }
    if (counts.recorded < this.limits.perAddress && this.recorded < this.limits.total) {
      counts.recorded++;
      this.recorded++;
      return true;
    }
    counts.suppressed++;
    return false;
  }

  /**
   * When `nowMs` is past the window (or `force`: at shutdown), starts a new
   * one and returns the old one's summary if it suppressed anything; else null.
   */
  roll(nowMs: number, force = false): RefusalSummary | null {
    if (!force && nowMs < this.windowEndMs) return null;
    const summary = this.summary(force ? nowMs : this.windowEndMs);
    // Windows stay aligned to the first one's start; an idle stretch is skipped whole.
    const elapsed = Math.max(0, nowMs - this.startMs);
    this.startMs = force ? nowMs : this.startMs + Math.floor(elapsed / this.limits.windowMs) * this.limits.windowMs;
    this.recorded = 0;
    this.seen.clear();
    this.untrackedSuppressed = 0;
    return summary;
  }

  private summary(endMs: number): RefusalSummary | null {
    const suppressedBy = [...this.seen].filter(([, c]) => c.suppressed > 0).sort((a, b) => b[1].suppressed - a[1].suppressed);
    const suppressed = suppressedBy.reduce((n, [, c]) => n + c.suppressed, 0) + this.untrackedSuppressed;
    if (suppressed === 0) return null;
    const top = suppressedBy.slice(0, SUMMARY_TOP_ADDRESSES).map(([ipAddress, c]) => ({ ipAddress, suppressed: c.suppressed }));
    return {
      windowStartMs: this.startMs,
      windowEndMs: endMs,
      recorded: this.recorded,
      suppressed,
      topAddresses: top,
      otherSuppressed: suppressed - top.reduce((n, a) => n + a.suppressed, 0),
    };
  }
}
