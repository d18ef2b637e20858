// Server-sent events the way OpenAI sends them: `data: <json>\n\n` frames,
// ending with `data: [DONE]` (chat, completions), or named `event:` frames
// with no [DONE] (responses). Writes wait for 'drain' when the socket buffer
// is full, so a slow reader slows its own stream instead of growing memory:
// while the writer waits, the request's events pile up in its engine queue
// only up to a bound, and then the engine pauses the request (engine/client.ts).
//
// A paused request still holds its KV slot, so a reader that stops for good
// must not keep it: a write that has waited stallTimeoutMs (a minute) for 'drain' ends
// the connection (res.locals.slowReader = true, logged with the request), and
// the request is cancelled as for any client that left.
import { once } from "node:events";
import type { Response } from "express";

/** How long one write may wait for a reader that reads nothing before the connection is closed. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

export interface SseWriterOptions {
  stallTimeoutMs?: number;
}

export class SseWriter {
  private closed = false;
  private readonly stallTimeoutMs: number;
  /** The wait for 'drain' in progress, if any. */
  private drained: Promise<void> | null = null;

  constructor(
    private readonly res: Response,
    options: SseWriterOptions = {},
  ) {
    this.stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    // Made for a response already closed, it must not wait for a "close" (or
    // a "drain") that will never come.
    this.closed = res.closed;
    res.once("close", () => (this.closed = true));
  }

  open(): void {
    this.res.status(200);
    this.res.setHeader("content-type", "text/event-stream; charset=utf-8");
    this.res.setHeader("cache-control", "no-cache");
    this.res.setHeader("connection", "keep-alive");
    this.res.setHeader("x-accel-buffering", "no");
    this.res.flushHeaders();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async send(payload: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(payload)}\n\n`);
  }

  /** A named event, `event: <name>` then `data: <json>`: how the Responses API frames its stream. */
  async sendEvent(event: string, payload: unknown): Promise<void> {
    await this.write(`event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`);
  }

  /** Ends the stream without `data: [DONE]` (the Responses API sends none). */
  end(): void {
    if (!this.closed) this.res.end();
  }

  async done(): Promise<void> {
    await this.write("data: [DONE]\n\n");
    if (!this.closed) this.res.end();
  }

  private async write(frame: string): Promise<void> {
    if (this.closed) return;
    if (this.res.write(frame)) return;
    // The n choices of one request write concurrently: they share one wait
    // (one set of listeners, one stall timer), not one each.
    await (this.drained ??= this.waitForDrain().finally(() => (this.drained = null)));
  }

  private async waitForDrain(): Promise<void> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<"stalled">((resolve) => {
      timer = setTimeout(() => resolve("stalled"), this.stallTimeoutMs);
    });
    try {
      const how = await Promise.race([once(this.res, "drain", { signal: ac.signal }), once(this.res, "close", { signal: ac.signal }), stalled]);
      if (how === "stalled" && !this.closed) {
        if (this.res.locals) this.res.locals.slowReader = true;
        this.closed = true;
        this.res.destroy();
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  }
}
