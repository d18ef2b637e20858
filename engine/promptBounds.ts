// Cheap checks that refuse a request before any tokenizing or sampling work:
// run by the front (it knows each served model's ModelInfo) and again by the
// worker (which must not trust its caller). Pure: no node-llama-cpp here.
import type { EngineErrorPayload, EnginePrompt, EngineRequest } from "./protocol.js";

/**
 * The most entries a `logit_bias` may have. Its cost per sampled token is
 * proportional to the entries (node-llama-cpp copies the map into arrays
 * and llama.cpp adds each bias), so it is bounded; 1024 lets a client ban
 * every token of a small vocabulary (stories260K has 512) where OpenAI's
 * models stop at a few hundred.
 */
export const MAX_LOGIT_BIAS_ENTRIES = 1024;

/**
 * The characters of a prompt's text the tokenizer will read, at least: the
 * template adds to a chat prompt, never removes. Token-id prompts: their length.
 */
export function promptChars(prompt: EnginePrompt): number {
  if (prompt.kind === "text") return prompt.text.length;
  if (prompt.kind === "tokens") return prompt.tokens.length;
  let n = 0;
  for (const m of prompt.messages) {
    n += m.content.length;
    for (const c of m.toolCalls ?? []) n += c.name.length + c.arguments.length;
  }
  return n;
}

/**
 * The longest UTF-8 byte length among a vocabulary's token texts: no token
 * covers more bytes of the prompt than that. (A text's UTF-16 length is at
 * most its UTF-8 byte length, and a vocabulary's spelling of a piece is never
 * shorter than the bytes it stands for: "▁" is 3 bytes for one space, "<0x0A>"
 * 6 for one byte.)
 */
export function longestTokenBytes(tokens: readonly string[]): number {
  let max = 1;
  for (const t of tokens) max = Math.max(max, Buffer.byteLength(t, "utf8"));
  return max;
}

/**
 * context_length_exceeded when the prompt surely cannot fit in a slot's
 * context, decided from its length alone: a text of more characters than
 * contextTokens × maxTokenBytes needs more tokens than the context holds.
 * Null when it may fit (tokenizing decides).
 */
export function promptSurelyTooLong(req: EngineRequest, contextTokens: number, maxTokenBytes: number): EngineErrorPayload | null {
  const tokens = req.prompt.kind === "tokens";
  // A worker that did not say (an older one, a fake in tests): tokenizing decides.
  if (!tokens && !(maxTokenBytes > 0)) return null;
  const chars = promptChars(req.prompt);
  const limit = tokens ? contextTokens : contextTokens * Math.max(1, maxTokenBytes);
  if (chars <= limit) return null;
  return {
    code: "context_length_exceeded",
    param: req.prompt.kind === "chat" ? "messages" : "prompt",
    message: tokens
      ? `This model's maximum context length is ${contextTokens} tokens. However, your prompt has ${chars} tokens. Please reduce the length of the prompt.`
      : `This model's maximum context length is ${contextTokens} tokens. However, your prompt is ${chars} characters long, ` +
        `more than ${contextTokens} tokens of this model can hold (a token covers at most ${maxTokenBytes} bytes). Please reduce the length of the prompt.`,
  };
}

/** invalid_value naming `logit_bias` when it has too many entries or a token id outside the vocabulary; null when it is fine. */
export function badLogitBias(bias: Readonly<Record<string, number>>, vocabSize: number): EngineErrorPayload | null {
  let entries = 0;
  for (const key in bias) {
    entries++;
    if (entries > MAX_LOGIT_BIAS_ENTRIES) {
      return { code: "invalid_value", param: "logit_bias", message: `Invalid 'logit_bias': it may have at most ${MAX_LOGIT_BIAS_ENTRIES} entries.` };
    }
    const id = Number(key);
    // A model whose file does not list its vocabulary (0) is left to llama.cpp.
    if (!Number.isInteger(id) || id < 0 || (vocabSize > 0 && id >= vocabSize)) {
      return {
        code: "invalid_value",
        param: `logit_bias.${key}`,
        message: `Invalid 'logit_bias': '${key}' is not a token id of this model (its vocabulary has ${vocabSize} tokens, ids 0 to ${vocabSize - 1}).`,
      };
    }
  }
  return null;
}

/** The first reason to refuse `req` on a model before it reaches the engine's queue; null: none. */
export function refuseEarly(req: EngineRequest, model: { contextPerSlot: number; vocabSize: number; maxTokenBytes: number }): EngineErrorPayload | null {
  return promptSurelyTooLong(req, model.contextPerSlot, model.maxTokenBytes) ?? badLogitBias(req.sampling.logitBias, model.vocabSize);
}
