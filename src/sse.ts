// Server-sent events the way OpenAI sends them: `data: <json>\n\n` frames,
// ending with `data: [DONE]` (chat, completions), or named `event:` frames
// with no [DONE] (responses). Writes wait for 'drain' when the socket buffer
// is full, so a slow reader slows its own stream instead of growing memory.
import { once } from "node:events";
import type { Response } from "express";

export class SseWriter {
  private closed = false;

  constructor(private readonly res: Response) {
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
    if (!this.res.write(frame)) {
      await Promise.race([once(this.res, "drain"), once(this.res, "close")]);
    }
  }
}
