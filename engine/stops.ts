// Stop strings with partial-match hold-back: text that could be the start of a
// stop string is withheld until it either completes the stop (and is dropped)
// or diverges (and is released). So a client never sees part of a stop string.

export interface StopResult {
  /** Text safe to emit now. */
  text: string;
  /** True when a stop string matched; nothing after it is ever emitted. */
  stopped: boolean;
}

export class StopMatcher {
  private pending = "";
  private readonly maxStopLength: number;

  constructor(private readonly stops: readonly string[]) {
    this.maxStopLength = stops.reduce((max, s) => Math.max(max, s.length), 0);
  }

  push(text: string): StopResult {
    if (this.stops.length === 0) return { text, stopped: false };
    this.pending += text;
    let cut = -1;
    for (const stop of this.stops) {
      if (stop.length === 0) continue;
      const at = this.pending.indexOf(stop);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return { text: out, stopped: true };
    }
    const hold = this.heldSuffixLength();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  /** Releases held-back text when generation ends for another reason. */
  flush(): string {
    const out = this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of some stop. */
  private heldSuffixLength(): number {
    const limit = Math.min(this.pending.length, this.maxStopLength - 1);
    for (let len = limit; len > 0; len--) {
      const suffix = this.pending.slice(this.pending.length - len);
      if (this.stops.some((s) => s.startsWith(suffix))) return len;
    }
    return 0;
  }
}
