// The server-wide bound on requests waiting for a KV slot, over all tenants.
// A request enters when the front admits it and leaves the waiting count at
// its first output (the QuotaGate's "reserved" → "running"); it leaves the
// books when it ends. Requests that find no room are refused at once with
// 429 queue_full, so memory and queueing delay stay bounded under any load;
// one that waits longer than --queue-timeout-ms is shed by runGeneration.
//
// Units are HTTP requests. A completions request with several prompts needs a
// slot per prompt but counts once here: the bound is on requests held, and the
// engine's own queue absorbs the difference (bounded by the prompt limit).
import { ApiError } from "../errors.js";
import { formatDuration } from "./formatDuration.js";

export interface QueueCounts {
  /** Admitted, no output yet: waiting for a slot or reading the prompt. */
  waiting: number;
  /** Producing output. */
  running: number;
}

/**
 * Whether one more request may wait. Room = the slots no running request
 * holds, plus `maxQueued`; so `maxQueued` 0 admits only while a slot is free.
 */
export function queueHasRoom(c: QueueCounts, slots: number, maxQueued: number): boolean {
  return c.waiting < maxQueued + Math.max(0, slots - c.running);
}

export interface ServerQueueOptions {
  slots: number;
  maxQueued: number;
  /** Wait suggested to a refused client (`retry-after`). */
  retryAfterMs?: number;
}

/** One admitted request's place in the books. Every method is idempotent. */
export interface QueueTicket {
  /** First output: no longer waiting. */
  started(): void;
  /** The request is over, whichever way. */
  close(): void;
}

export class ServerQueue {
  readonly slots: number;
  readonly maxQueued: number;
  readonly retryAfterMs: number;
  private counts: QueueCounts = { waiting: 0, running: 0 };

  constructor(o: ServerQueueOptions) {
    if (!Number.isSafeInteger(o.slots) || o.slots < 1) throw new RangeError(`slots must be an integer ≥ 1, got ${o.slots}`);
    if (!Number.isSafeInteger(o.maxQueued) || o.maxQueued < 0) throw new RangeError(`maxQueued must be an integer ≥ 0, got ${o.maxQueued}`);
    this.slots = o.slots;
    this.maxQueued = o.maxQueued;
    this.retryAfterMs = o.retryAfterMs ?? 1000;
  }

  get waiting(): number {
    return this.counts.waiting;
  }

  get running(): number {
    return this.counts.running;
  }

  hasRoom(): boolean {
    return queueHasRoom(this.counts, this.slots, this.maxQueued);
  }

  /** Takes a waiting place, or throws 429 queue_full when there is none. */
  enter(): QueueTicket {
    if (!this.hasRoom()) throw this.fullError();
    const c = this.counts;
    c.waiting += 1;
    let phase: "waiting" | "running" | "closed" = "waiting";
    return {
      started: () => {
        if (phase !== "waiting") return;
        phase = "running";
        c.waiting -= 1;
        c.running += 1;
      },
      close: () => {
        if (phase === "waiting") c.waiting -= 1;
        else if (phase === "running") c.running -= 1;
        phase = "closed";
      },
    };
  }

  /** What a refused request gets: retryable, like the per-tenant queue cap. */
  fullError(): ApiError {
    return new ApiError(
      "queue_full",
      `The server is at capacity: ${this.counts.waiting} requests are waiting for ${this.slots} slots (at most ${this.maxQueued} may wait while every slot is busy). Please try again in ${formatDuration(this.retryAfterMs)}.`,
      null,
      Math.ceil(this.retryAfterMs / 1000),
      { headers: { "retry-after-ms": String(this.retryAfterMs) } },
    );
  }
}
