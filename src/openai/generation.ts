// The bridge between an HTTP request and engine requests: submit, wait for
// admission (so errors such as context_length_exceeded become proper HTTP
// errors before any SSE header is sent), then consume deltas.
import type { EngineClient, EngineEvent, FinishReason, EngineRequest, Usage } from "../../engine/index.js";
import { fromEngineError } from "../errors.js";

export interface Admitted {
  index: number;
  events: AsyncIterableIterator<EngineEvent>;
  promptTokens: number;
  promptText: string | null;
}

export interface ChoiceOutcome {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
}

/** Submits every request; resolves once all are admitted, or cancels them all and throws the first error. */
export async function admitAll(engine: EngineClient, reqs: EngineRequest[], abort: AbortController): Promise<Admitted[]> {
  const streams = reqs.map((r) => engine.submit(r, abort.signal));
  const firsts = await Promise.all(streams.map((s) => s.next()));
  const admitted: Admitted[] = [];
  for (const [index, first] of firsts.entries()) {
    const event = first.done ? undefined : first.value;
    if (event?.type === "accepted") {
      admitted.push({ index, events: streams[index]!, promptTokens: event.promptTokens, promptText: event.promptText });
      continue;
    }
    abort.abort();
    if (event?.type === "error") throw fromEngineError(event.error);
    throw fromEngineError({ code: "engine_error", param: null, message: "The engine closed the request without a reply." });
  }
  return admitted;
}

/** Reads one admitted request to the end; throws if the engine fails it midway. */
export async function collect(a: Admitted): Promise<ChoiceOutcome> {
  let text = "";
  for await (const ev of a.events) {
    if (ev.type === "error") throw fromEngineError(ev.error);
    if (ev.type !== "delta") continue;
    text += ev.text;
    if (ev.finish && ev.usage) return { text, finishReason: ev.finish, usage: ev.usage };
  }
  throw fromEngineError({ code: "engine_error", param: null, message: "The request was cancelled." });
}

export function sumUsage(usages: Usage[]): Usage {
  return usages.reduce(
    (acc, u) => ({
      promptTokens: acc.promptTokens + u.promptTokens,
      completionTokens: acc.completionTokens + u.completionTokens,
      cachedTokens: acc.cachedTokens + u.cachedTokens,
      // The request waited as long as its slowest prompt did.
      queueMs: Math.max(acc.queueMs ?? 0, u.queueMs ?? 0),
    }),
    { promptTokens: 0, completionTokens: 0, cachedTokens: 0, queueMs: 0 },
  );
}

/** OpenAI's usage object, with the detail fields the spec lists. */
export function usageJson(u: Usage) {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}
