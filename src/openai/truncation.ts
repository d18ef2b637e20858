// `truncation: "auto"` (Responses API): when a conversation no longer fits the
// model's context, drop items from its start until it does, keeping the
// instructions and at least the newest item. Only the worker can count a
// rendered prompt's tokens (the chat template and tokenizer live there), so
// whether a start fits is asked of the engine itself: it admits or refuses a
// request synchronously (context_length_exceeded) before generating anything,
// and a probe that was admitted is cancelled at once.
import type { EngineClient, EngineRequest } from "../../engine/index.js";
import { fromEngineError } from "../errors.js";

/** What a start needs: items a function call output answers must stay with it. */
export interface TruncatableItem {
  type: string;
  call_id?: string;
}

/**
 * The first index at or after `start` that leaves no orphan: a
 * function_call_output whose function_call was dropped would read as an answer
 * to a question nobody asked, so it goes with its call. Never past the last item.
 */
export function truncationStart(items: readonly TruncatableItem[], start: number): number {
  const last = Math.max(0, items.length - 1);
  let k = Math.min(start, last);
  const dropped = new Set(items.slice(0, k).flatMap((i) => (i.type === "function_call" && i.call_id !== undefined ? [i.call_id] : [])));
  while (k < last && items[k]!.type === "function_call_output" && dropped.has(items[k]!.call_id ?? "")) k++;
  return k;
}

/**
 * The smallest number of leading items to drop so that `build(start)` fits the
 * context (0 when everything fits). Fitting is monotone in the start (fewer
 * items, fewer tokens), so a binary search asks the engine O(log n) times.
 * When even the newest item alone does not fit, returns that start: the real
 * request then gets its 400 context_length_exceeded as without truncation.
 */
export async function fitByDroppingItems(engine: EngineClient, items: readonly TruncatableItem[], build: (start: number) => EngineRequest): Promise<number> {
  if (items.length <= 1 || (await fits(engine, build(0)))) return 0;
  let tooLong = 0; // a start known not to fit
  let fitting = truncationStart(items, items.length - 1); // the smallest start known to fit, or the last resort
  if (!(await fits(engine, build(fitting)))) return fitting;
  while (true) {
    const mid = truncationStart(items, Math.floor((tooLong + fitting) / 2));
    if (mid <= tooLong || mid >= fitting) return fitting;
    if (await fits(engine, build(mid))) fitting = mid;
    else tooLong = mid;
  }
}

/** Whether the engine admits `req` (its prompt fits the context); other refusals are thrown. */
async function fits(engine: EngineClient, req: EngineRequest): Promise<boolean> {
  const abort = new AbortController();
  const events = engine.submit(req, abort.signal);
  try {
    const first = await events.next();
    const event = first.done ? undefined : first.value;
    if (event?.type === "accepted") return true;
    if (event?.type === "error" && event.error.code === "context_length_exceeded") return false;
    if (event?.type === "error") throw fromEngineError(event.error);
    throw fromEngineError({ code: "engine_error", param: null, message: "The engine closed the request without a reply." });
  } finally {
    abort.abort();
    void events.return?.(undefined);
  }
}
