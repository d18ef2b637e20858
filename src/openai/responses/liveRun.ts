// One background response running in this process: its whole event log in
// memory while it runs (live readers follow it there, each at its own pace),
// the events not yet written to the store, and the signal that stops it.
import type { StoredEvent } from "../../store/backgroundStore.js";
import type { JsonObject } from "../../store/conversationStore.js";

/** One background response running in this process. */
export class LiveRun {
  /** Every event so far, in order: log[n].sequence_number === n. */
  readonly log: JsonObject[] = [];
  /** Events not yet written to the store. */
  pending: StoredEvent[] = [];
  /** True once the run is over and its last event (if any) is in `log`. */
  done = false;
  /** Its row is committed (the owner's poll ignores it until then). */
  stored = false;
  readonly abort = new AbortController();
  /** Resolves when the run has written its end (or never started). */
  readonly ended: Promise<void>;
  readonly markEnded: () => void;
  private wake: (() => void) | null = null;
  private changed: Promise<void> | null = null;

  constructor(
    readonly tenantId: string,
    readonly id: string,
  ) {
    let resolve!: () => void;
    this.ended = new Promise<void>((r) => (resolve = r));
    this.markEnded = resolve;
  }

  /** Assigns the next sequence number and tells the readers; the store gets it at the next flush. */
  push(type: string, fields: object): StoredEvent {
    const data = { type, ...fields, sequence_number: this.log.length } as JsonObject;
    const event = { sequenceNumber: this.log.length, type, data };
    this.log.push(data);
    this.notify();
    return event;
  }

  finish(): void {
    this.done = true;
    this.notify();
  }

  /** Resolves at the next event, or the end. */
  next(): Promise<void> {
    return (this.changed ??= new Promise<void>((resolve) => (this.wake = resolve)));
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    this.changed = null;
    wake?.();
  }
}
