// Shared by the Responses/Conversations integration tests: the raw SSE of a
// Responses stream (event names included), and the SDK error a call must fail with.
import assert from "node:assert/strict";
import { createParser } from "eventsource-parser";
import type OpenAI from "openai";

export interface NamedEvent {
  /** The `event:` line of the frame (undefined when it had none). */
  event: string | undefined;
  data: string;
}

export interface RawStream {
  status: number;
  headers: Headers;
  events: NamedEvent[];
  /** Everything the server sent, as text. */
  text: string;
}

/** POSTs a request and reads the whole SSE body, frame by frame. */
export async function rawStream(url: string, body: unknown, headers: Record<string, string> = {}): Promise<RawStream> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const events: NamedEvent[] = [];
  const parser = createParser({ onEvent: (e) => events.push({ event: e.event, data: e.data }) });
  const decoder = new TextDecoder();
  let text = "";
  if (res.body) {
    for await (const chunk of res.body) {
      const piece = decoder.decode(chunk, { stream: true });
      text += piece;
      parser.feed(piece);
    }
  }
  return { status: res.status, headers: res.headers, events, text };
}

type ErrorClass = typeof OpenAI.BadRequestError | typeof OpenAI.NotFoundError | typeof OpenAI.RateLimitError;

/** Awaits `p`, which must fail with `cls`; returns the error. */
export async function apiError<C extends ErrorClass>(p: Promise<unknown>, cls: C): Promise<InstanceType<C>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    return err as InstanceType<C>;
  }
  assert.fail(`expected ${cls.name}, but the call succeeded`);
}

/** The documented event sequence of one text response (the delta appears one or more times). */
export const STREAM_ORDER = [
  "response.created",
  "response.in_progress",
  "response.output_item.added",
  "response.content_part.added",
  "response.output_text.delta",
  "response.output_text.done",
  "response.content_part.done",
  "response.output_item.done",
] as const;

/** Event types with consecutive repeats of the delta collapsed into one. */
export function collapseDeltas(types: readonly string[]): string[] {
  return types.filter((t, i) => !(t === "response.output_text.delta" && types[i - 1] === "response.output_text.delta"));
}
