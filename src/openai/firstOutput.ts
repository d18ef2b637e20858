// Waiting for a generation to start. The engine accepts a request at once and
// reports its first output once it holds a slot and has read the prompt; until
// then nothing has been sent, so a request that waits too long can still be
// answered with a plain HTTP error (503 queue_timeout) instead of an SSE error
// frame, and a client sees response headers only for work that is running.
import type { Admitted } from "./generation.js";

/**
 * Resolves when any choice has its first event, or its stream has ended (a
 * cancel), with choices whose `events` replay what was read; null when none
 * did within `timeoutMs` (0: no limit). On null the caller must cancel the
 * choices: their streams are still open.
 */
export async function firstOutput(choices: readonly Admitted[], timeoutMs: number): Promise<Admitted[] | null> {
  const firsts = choices.map((c) => c.events.next());
  let timer: NodeJS.Timeout | undefined;
  const deadline =
    timeoutMs > 0 ? new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs))) : new Promise<never>(() => undefined);
  try {
    if ((await Promise.race([...firsts, deadline])) === "timeout") return null;
  } finally {
    clearTimeout(timer);
  }
  return choices.map((c, i) => ({ ...c, events: replay(firsts[i]!, c.events) }));
}

/** `first` (an already requested next()) then the rest of `events`. */
async function* replay<T>(first: Promise<IteratorResult<T>>, events: AsyncIterableIterator<T>): AsyncGenerator<T, void, undefined> {
  const r = await first;
  if (r.done) return;
  yield r.value;
  yield* events;
}
