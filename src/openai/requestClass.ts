// The priority class of the request being served: "batch" for a Batch API
// line dispatched through the ordinary route (src/batch/dispatch.ts), else
// interactive. Carried by AsyncLocalStorage from the middleware that marks the
// line to admitAll, which tags its engine requests, so every route serves a
// batch line with its own code path, unchanged.
import { AsyncLocalStorage } from "node:async_hooks";

const current = new AsyncLocalStorage<"batch">();

/** Runs `fn` (and everything it awaits) as batch work. */
export function runAsBatch<T>(fn: () => T): T {
  return current.run("batch", fn);
}

export function isBatchWork(): boolean {
  return current.getStore() === "batch";
}
