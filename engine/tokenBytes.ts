// Each token's own text and raw bytes, as OpenAI's logprobs report them
// (`token`, `bytes`), read from the GGUF vocabulary without the tokenizer.
//
// The rules mirror llama.cpp's token_to_piece with special tokens not rendered
// (src/llama-vocab.cpp), which is how the engine detokenizes output: the bytes
// of the sampled tokens, concatenated, are the bytes of the generated text.
//   - SentencePiece ("llama", also "bert" and "t5", which llama.cpp renders the
//     same way): NORMAL tokens are their text with ▁ (U+2581) as a space; BYTE
//     tokens `<0xHH>` are that one byte.
//   - Byte-level BPE ("gpt2"): NORMAL tokens spell their bytes through GPT-2's
//     bytes-to-unicode table, inverted here; a few pre-tokenizers keep ▁ instead.
//   - USER_DEFINED tokens are their text as written; CONTROL, UNKNOWN and
//     UNUSED tokens write nothing: their bytes are null (the spec's "no bytes
//     representation") and `token` shows their vocabulary text (`</s>`).
// Any other tokenizer falls back to the UTF-8 of the model's own detokenization.

/** llama.cpp's token types (tokenizer.ggml.token_type); absent metadata means NORMAL. */
const NORMAL = 1;
const USER_DEFINED = 4;
const BYTE = 6;

export interface Vocabulary {
  /** tokenizer.ggml.model: "llama", "gpt2", ... */
  model: string | undefined;
  /** tokenizer.ggml.pre: the BPE pre-tokenizer. */
  pre?: string | undefined;
  tokens: readonly string[];
  tokenTypes?: readonly number[] | undefined;
}

export interface TokenPiece {
  /** The bytes as UTF-8 text, or `bytes:\xe2\x80` when they are not valid UTF-8 on their own. */
  token: string;
  /** null: the token writes no text (control and unknown tokens). */
  bytes: number[] | null;
}

/** BPE pre-tokenizers for which llama.cpp keeps SentencePiece-style ▁ (escape_whitespaces). */
const ESCAPED_BPE_PRE = new Set(["gemma4", "granite-embed-multi-311m", "sarvam-moe"]);
const SPM_STYLE = new Set(["llama", "bert", "t5"]);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** OpenAI's `token` for a byte sequence: the text, or `bytes:` and \xHH escapes when it is not valid UTF-8. */
export function tokenString(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return `bytes:${Array.from(bytes, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}`;
  }
}

let gpt2Inverse: Map<number, number> | null = null;

/** GPT-2's bytes_to_unicode() inverted: code point → the byte it stands for. */
export function gpt2UnicodeToByte(): Map<number, number> {
  if (gpt2Inverse) return gpt2Inverse;
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const kept = new Set(printable);
  const inverse = new Map<number, number>();
  for (const b of printable) inverse.set(b, b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (!kept.has(b)) inverse.set(256 + n++, b);
  gpt2Inverse = inverse;
  return inverse;
}

/** Token id → its piece, computed on first use and cached (only sampled and top tokens are ever asked for). */
export class TokenPieces {
  private readonly cache = new Map<number, TokenPiece>();
  private readonly style: "spm" | "bpe" | "other";

  constructor(
    private readonly vocab: Vocabulary | null,
    /** The model's detokenization of one token, special tokens not rendered: the fallback. */
    private readonly detokenize: (token: number) => string,
  ) {
    const model = vocab?.model;
    if (!vocab || vocab.tokens.length === 0 || model === undefined) this.style = "other";
    else if (SPM_STYLE.has(model) || (model === "gpt2" && ESCAPED_BPE_PRE.has(vocab.pre ?? ""))) this.style = "spm";
    else if (model === "gpt2") this.style = "bpe";
    else this.style = "other";
  }

  piece(token: number): TokenPiece {
    let piece = this.cache.get(token);
    if (!piece) {
      piece = this.compute(token);
      this.cache.set(token, piece);
    }
    return piece;
  }

  private compute(token: number): TokenPiece {
    const text = this.vocab?.tokens[token];
    if (this.style === "other" || text === undefined) return fromBytes(utf8.encode(this.detokenize(token)));
    const type = this.vocab!.tokenTypes?.[token] ?? NORMAL;
    if (type === BYTE) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
      return m ? fromBytes(Uint8Array.of(parseInt(m[1]!, 16))) : fromBytes(utf8.encode(this.detokenize(token)));
    }
    if (type === USER_DEFINED) return fromBytes(utf8.encode(text));
    if (type !== NORMAL) return { token: text, bytes: null };
    if (this.style === "spm") return fromBytes(utf8.encode(text.replaceAll("\u2581", " ")));
    const table = gpt2UnicodeToByte();
    const bytes: number[] = [];
    for (const ch of text) {
      const b = table.get(ch.codePointAt(0)!);
      // Not a byte-level spelling (llama.cpp prints [UNK_BYTE_…] here): trust the model's own text.
      if (b === undefined) return fromBytes(utf8.encode(this.detokenize(token)));
      bytes.push(b);
    }
    return fromBytes(Uint8Array.from(bytes));
  }
}

function fromBytes(bytes: Uint8Array): TokenPiece {
  return { token: tokenString(bytes), bytes: Array.from(bytes) };
}
