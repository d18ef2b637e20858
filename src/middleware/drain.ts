// Graceful drain. While accepting, every /v1 request is counted from its start
// until its response closes (finished or cut); once draining, new /v1 requests
// are refused with a retryable 503 and every response asks the client to
// close its connection, so keep-alive sockets move to another instance.
import type { RequestHandler } from "express";
import { ApiError } from "../errors.js";

/** The number of /v1 requests in flight, and a way to wait until there are none. */
export class InflightRequests {
  private n = 0;
  private waiters: Array<() => void> = [];

  get count(): number {
    return this.n;
  }

  /** Counts one request until `onClose` fires (exactly once per request). */
  begin(onClose: (release: () => void) => void): void {
    this.n++;
    onClose(() => {
      this.n--;
      if (this.n === 0) for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves when no request is in flight (at once when none is). */
  idle(): Promise<void> {
    if (this.n === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export const SHUTTING_DOWN_MESSAGE = "llamux is shutting down; retry the request (another instance will serve it).";

/** Mounted on /v1: refuses new work once draining, otherwise counts the request in flight. */
export function drainGate(accepting: () => boolean, inflight: InflightRequests): RequestHandler {
  return (_req, res, next) => {
    if (!accepting()) {
      next(new ApiError("engine_unavailable", SHUTTING_DOWN_MESSAGE, null, 1));
      return;
    }
    inflight.begin((release) => res.once("close", release));
    next();
  };
}

/** Mounted first: while draining, every response closes its connection after it is sent. */
export function closeConnectionsWhenDraining(accepting: () => boolean): RequestHandler {
  return (_req, res, next) => {
    if (!accepting()) res.setHeader("connection", "close");
    next();
  };
}
