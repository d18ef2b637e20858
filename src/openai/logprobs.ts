// The engine's per-token log-probabilities (protocol TokenLogprob) in OpenAI's
// two wire shapes: chat's `logprobs.content` entries, and the legacy
// completions object of parallel arrays with character offsets.
import type { TokenLogprob } from "../../engine/index.js";

/** Chat: ChatCompletionTokenLogprob, with exactly the requested top alternatives. */
export function chatTokenLogprob(e: TokenLogprob) {
  return {
    token: e.token,
    logprob: e.logprob,
    bytes: e.bytes,
    top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
  };
}

/** Chat: a choice's (or a chunk's) `logprobs` object. */
export function chatLogprobs(entries: readonly TokenLogprob[]) {
  return { content: entries.map(chatTokenLogprob), refusal: null };
}

/** Responses: an output_text part's LogProb (byte-less control tokens get []: the schema wants an array). */
export function responseLogProb(e: TokenLogprob) {
  return {
    token: e.token,
    logprob: e.logprob,
    bytes: e.bytes ?? [],
    top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes ?? [] })),
  };
}

type ResponseLogProbJson = ReturnType<typeof responseLogProb>;

/** Responses: the ResponseLogProb of output_text.delta and .done events, which have no bytes. */
export function responseEventLogProb(e: ResponseLogProbJson) {
  return { token: e.token, logprob: e.logprob, top_logprobs: e.top_logprobs.map((t) => ({ token: t.token, logprob: t.logprob })) };
}

export interface CompletionLogprobsJson {
  tokens: string[];
  token_logprobs: number[];
  /** The requested most likely tokens, and the sampled one: up to logprobs + 1 keys, as OpenAI's. */
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

/**
 * Completions: builds a choice's `logprobs`, chunk by chunk when streaming.
 * text_offset is where each token's text starts in the choice's text, in
 * characters (Unicode code points, as OpenAI counts them): the count of
 * characters the previous tokens' bytes decode to, so a character split
 * across tokens is counted once, at the token that completes it. The running
 * count spans chunks; one builder per choice.
 */
export class CompletionLogprobs {
  private offset = 0;
  private readonly decoder = new TextDecoder("utf-8");

  take(entries: readonly TokenLogprob[]): CompletionLogprobsJson {
    const out: CompletionLogprobsJson = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const e of entries) {
      out.tokens.push(e.token);
      out.token_logprobs.push(e.logprob);
      const top: Record<string, number> = {};
      // Tokens with the same text share a key: the likelier one is kept.
      for (const t of e.top) if (!Object.hasOwn(top, t.token)) top[t.token] = t.logprob;
      if (!Object.hasOwn(top, e.token)) top[e.token] = e.logprob;
      out.top_logprobs.push(top);
      out.text_offset.push(this.offset);
      if (e.bytes) this.offset += codePoints(this.decoder.decode(Uint8Array.from(e.bytes), { stream: true }));
    }
    return out;
  }
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}
