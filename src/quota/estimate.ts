// Pre-flight token estimate for quota admission, before the engine has seen
// the request: prompt tokens counted with tiktoken's cl100k_base (not the
// served model's tokenizer, which lives in the engine process; BPE vocabularies
// of this size agree to within a few percent on ordinary text, and settle()
// corrects the charge with the engine's exact usage afterwards) plus the most
// the request may generate. O(prompt length), no engine, no model.
import { get_encoding, type Tiktoken } from "tiktoken";

/** Template tokens per chat message (role name, start/end markers, separator), as ChatML-style templates spend. */
export const TOKENS_PER_MESSAGE = 4;
/** A message's `name` field costs about one more token. */
export const TOKENS_PER_NAME = 1;
/** The assistant header the template appends to prompt the reply. */
export const REPLY_PRIMING_TOKENS = 3;
/**
 * Completion tokens assumed for a chat request with neither max_tokens nor a
 * tenant cap. The true bound is the context window, which only the engine
 * knows; reserving it would refuse most requests near a limit, so a typical
 * reply length is reserved and settle() charges the rest.
 */
export const DEFAULT_CHAT_COMPLETION_TOKENS = 256;

/**
 * BPE merging inside one pre-token is quadratic in its length (measured here:
 * 160 000 letters without a space took 31 s), so text is encoded in pieces of
 * at most this many UTF-16 units, cut before a word's leading space where possible,
 * so the pieces are the ones the tokenizer would have made anyway.
 */
const MAX_PIECE_CHARS = 256;

/**
 * Characters counted exactly per estimate (~0.5 µs each); beyond, tokens are
 * extrapolated at the rate measured so far. Keeps the event loop free even for
 * a 4 MiB body (≈ 2 s if counted whole), at a precision that no longer matters:
 * 256 Ki characters is already tens of thousands of tokens, and settle()
 * charges the exact count anyway.
 */
export const EXACT_CHARS_PER_ESTIMATE = 262_144;

let encoder: Tiktoken | null = null;

/** Counts the texts of one request against one shared exact-counting budget. */
class TokenCounter {
  private exactCharsLeft = EXACT_CHARS_PER_ESTIMATE;
  private countedChars = 0;
  private countedTokens = 0;

  count(text: string): number {
    if (text.length === 0) return 0;
    encoder ??= get_encoding("cl100k_base");
    let tokens = 0;
    let start = 0;
    while (start < text.length && this.exactCharsLeft > 0) {
      const end = pieceEnd(text, start);
      tokens += encoder.encode_ordinary(text.slice(start, end)).length;
      this.exactCharsLeft -= end - start;
      this.countedChars += end - start;
      start = end;
    }
    this.countedTokens += tokens;
    const rest = text.length - start;
    return rest === 0 ? tokens : tokens + Math.ceil((rest * this.countedTokens) / this.countedChars);
  }
}

/** Tokens in `text` (special-token strings such as "<|endoftext|>" count as plain text, never throw). */
export function countTextTokens(text: string): number {
  return new TokenCounter().count(text);
}

/** Releases the tokenizer's WASM memory (at shutdown); the next count creates it again. */
export function freeEncoder(): void {
  encoder?.free();
  encoder = null;
}

function pieceEnd(text: string, start: number): number {
  const limit = start + MAX_PIECE_CHARS;
  if (limit >= text.length) return text.length;
  // Cut before a space that starts a word (" word" is one pre-token; a space
  // before a newline or another space can belong to a whitespace pre-token).
  for (let i = limit; i > start + MAX_PIECE_CHARS / 2; i--) {
    if (text.charCodeAt(i) === 0x20 && !isSpace(text.charCodeAt(i + 1))) return i;
  }
  // No such space: cut anywhere but inside a surrogate pair.
  const code = text.charCodeAt(limit);
  return code >= 0xdc00 && code <= 0xdfff ? limit - 1 : limit;
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x09 || code === 0x0d;
}

/** The parts of a chat message the estimate reads (structurally, so a validated ChatRequest message fits). */
export interface ChatMessageLike {
  name?: string | undefined;
  content?: string | readonly { type: string; [key: string]: unknown }[] | null | undefined;
  refusal?: string | null | undefined;
}

export interface EstimateOptions {
  /** Completion tokens assumed when maxTokens is null. */
  defaultCompletionTokens?: number;
  /** Choices generated from the prompt (`n`, default 1): the prompt is read once, the completion budget spent once per choice. */
  choices?: number;
}

/**
 * Prompt tokens + template overhead + the completion budget per choice.
 * `maxTokens`: what the engine will be given, i.e.
 * capMaxTokens(tenant.limits, req.max_completion_tokens ?? req.max_tokens ?? null).
 */
/**
 * Prompt text a chat carries besides its messages' own, as messages to count:
 * the tool list the template renders, and the calls earlier turns made.
 */
export function toolPromptParts(tools: readonly unknown[] | undefined, calls: ReadonlyArray<{ name: string; arguments: string }>): Array<{ content: string }> {
  return [...(tools ? [{ content: JSON.stringify(tools) }] : []), ...calls.map((c) => ({ content: c.name + c.arguments }))];
}

export function estimateChatTokens(messages: readonly ChatMessageLike[], maxTokens: number | null, options: EstimateOptions = {}): number {
  const counter = new TokenCounter();
  let prompt = REPLY_PRIMING_TOKENS;
  for (const m of messages) {
    prompt += TOKENS_PER_MESSAGE + (m.name ? TOKENS_PER_NAME + counter.count(m.name) : 0);
    prompt += counter.count(messageText(m));
  }
  return prompt + (options.choices ?? 1) * (maxTokens ?? options.defaultCompletionTokens ?? DEFAULT_CHAT_COMPLETION_TOKENS);
}

/**
 * Every prompt's tokens + the completion budget once per choice: `choices`
 * (`n`) per prompt (an array of prompts is that many generations each; the
 * prompt itself is read once). Token-id arrays count as their length.
 * `maxTokens` is the budget the endpoint resolved (its default applied).
 */
export function estimateCompletionTokens(
  prompt: string | readonly string[] | readonly number[] | readonly (readonly number[])[],
  maxTokens: number,
  choices = 1,
): number {
  const prompts: readonly (string | readonly number[])[] =
    typeof prompt === "string"
      ? [prompt]
      : prompt.length > 0 && typeof prompt[0] === "number"
        ? [prompt as readonly number[]]
        : (prompt as readonly (string | readonly number[])[]);
  const counter = new TokenCounter();
  let total = 0;
  for (const p of prompts) total += typeof p === "string" ? counter.count(p) : p.length;
  return total + prompts.length * choices * maxTokens;
}

function messageText(m: ChatMessageLike): string {
  if (typeof m.content === "string") return m.content;
  if (!m.content) return m.refusal ?? "";
  let text = "";
  for (const part of m.content) {
    const value = part.type === "refusal" ? part.refusal : part.text;
    if (typeof value === "string") text += value;
  }
  return text;
}
