// A single-consumer push queue exposed as an async iterator: the IPC side
// pushes events as they arrive, the HTTP side consumes them at its own pace.
//
// Optionally bounded: with `bound`, the queue counts the bytes it holds
// (bound.sizeOf) and calls bound.onFull once they reach bound.highWaterBytes,
// then bound.onDrained once the consumer has taken them down to half of it.
// The producer is expected to stop pushing in between (the engine pauses the
// request), so what a slow consumer costs stays near highWaterBytes; pushes
// are never refused (events already in flight still arrive).
export interface QueueBound<T> {
  highWaterBytes: number;
  sizeOf: (item: T) => number;
  onFull: () => void;
  onDrained: () => void;
}

export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  private closed = false;
  private bytes = 0;
  private full = false;

  constructor(private readonly bound: QueueBound<T> | null = null) {}

  /** Bytes held (by bound.sizeOf; 0 without a bound). */
  get bufferedBytes(): number {
    return this.bytes;
  }

  push(item: T): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: item, done: false });
      return;
    }
    this.items.push(item);
    if (!this.bound) return;
    this.bytes += this.bound.sizeOf(item);
    if (!this.full && this.bytes >= this.bound.highWaterBytes) {
      this.full = true;
      this.bound.onFull();
    }
  }

  /** Ends iteration once buffered items are consumed. */
  close(): void {
    this.closed = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) {
      const item = this.items.shift()!;
      if (this.bound) {
        this.bytes -= this.bound.sizeOf(item);
        if (this.full && this.bytes <= this.bound.highWaterBytes / 2) {
          this.full = false;
          if (!this.closed) this.bound.onDrained();
        }
      }
      return Promise.resolve({ value: item, done: false });
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.close();
    this.items.length = 0;
    this.bytes = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
