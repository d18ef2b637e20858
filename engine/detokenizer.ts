// Incremental detokenization that never emits a broken character.
//
// A token can end in the middle of a multi-byte UTF-8 character (byte-fallback
// vocabularies do this for every non-ASCII character), and SentencePiece
// decides leading spaces from the previous token. So each step decodes a small
// window [prefixOffset, end) and emits only what it adds over [prefixOffset,
// readOffset); when the window ends in U+FFFD (an incomplete sequence) the text
// is held back until a later token completes it. Work per token is bounded by
// the window, not by the length of the generation.

export type Token = number;

/** Decodes `tokens` as the continuation of `context` (the tokens before them). */
export type DecodeFn = (tokens: readonly Token[], context: readonly Token[]) => string;

const REPLACEMENT = "\uFFFD";
const CONTEXT_TOKENS = 4;

export class IncrementalDetokenizer {
  private readonly tokens: Token[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  /** `context`: the tokens that precede the generation (the prompt's tail). */
  constructor(
    private readonly decode: DecodeFn,
    private readonly context: readonly Token[] = [],
  ) {}

  /** Adds one token; returns the text it completes (possibly ""). */
  push(token: Token): string {
    this.tokens.push(token);
    const ctx = this.contextBefore(this.prefixOffset);
    const prefixText = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset), ctx);
    const fullText = this.decode(this.tokens.slice(this.prefixOffset), ctx);
    if (fullText.length <= prefixText.length || fullText.endsWith(REPLACEMENT)) return "";
    this.prefixOffset = this.readOffset;
    this.readOffset = this.tokens.length;
    return fullText.slice(prefixText.length);
  }

  /** Text still held back at the end of generation (an unfinished character decodes as U+FFFD). */
  flush(): string {
    if (this.readOffset === this.tokens.length) return "";
    const ctx = this.contextBefore(this.prefixOffset);
    const prefixText = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset), ctx);
    const fullText = this.decode(this.tokens.slice(this.prefixOffset), ctx);
    this.prefixOffset = this.readOffset = this.tokens.length;
    return fullText.slice(prefixText.length);
  }

  private contextBefore(offset: number): readonly Token[] {
    if (offset >= CONTEXT_TOKENS) return this.tokens.slice(offset - CONTEXT_TOKENS, offset);
    const fromContext = this.context.slice(Math.max(0, this.context.length - (CONTEXT_TOKENS - offset)));
    return [...fromContext, ...this.tokens.slice(0, offset)];
  }
}
