// The bridge between an HTTP request and engine requests: submit, wait for
// admission (so errors such as context_length_exceeded become proper HTTP
// errors before any SSE header is sent), then consume deltas.
import type { EngineClient, EngineEvent, FinishReason, EngineRequest, RequestEvents, TokenLogprob, Usage } from "../../engine/index.js";
import { fromEngineError } from "../errors.js";
import { isBatchWork } from "./requestClass.js";

export interface Admitted {
  index: number;
  events: AsyncIterableIterator<EngineEvent>;
  promptTokens: number;
  promptText: string | null;
  /** What the choice used by the engine's count when it ends however it ends (RequestEvents.usage); absent: unknown. */
  usage?: Promise<Usage | null>;
  /** The choice asked for logprobs (EngineRequest.logprobs): its body carries them, even when empty. Absent: false. */
  logprobs?: boolean;
}

export interface ChoiceOutcome {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  /** Every entry the engine sent, in order (empty without logprobs). */
  logprobs: TokenLogprob[];
}

/** Submits every request; resolves once all are admitted, or cancels them all and throws the first error. */
export async function admitAll(engine: EngineClient, reqs: EngineRequest[], abort: AbortController): Promise<Admitted[]> {
  // A Batch API line runs in the engine's batch class: only on idle capacity, preemptible.
  const batch = isBatchWork();
  const streams = reqs.map((r) => engine.submit(batch ? { ...r, priorityClass: "batch" } : r, abort.signal));
  const firsts = await Promise.all(streams.map((s) => s.next()));
  const admitted: Admitted[] = [];
  for (const [index, first] of firsts.entries()) {
    const event = first.done ? undefined : first.value;
    if (event?.type === "accepted") {
      admitted.push({
        index,
        events: streams[index]!,
        usage: (streams[index] as Partial<RequestEvents>).usage,
        promptTokens: event.promptTokens,
        promptText: event.promptText,
        logprobs: reqs[index]!.logprobs !== undefined,
      });
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
  const logprobs: TokenLogprob[] = [];
  for await (const ev of a.events) {
    if (ev.type === "error") throw fromEngineError(ev.error);
    if (ev.type !== "delta") continue;
    text += ev.text;
    if (ev.logprobs) for (const e of ev.logprobs) logprobs.push(e);
    if (ev.finish && ev.usage) return { text, finishReason: ev.finish, usage: ev.usage, logprobs };
  }
  throw fromEngineError({ code: "engine_error", param: null, message: "The request was cancelled." });
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
