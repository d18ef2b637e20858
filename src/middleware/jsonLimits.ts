// Limits on the shape of a JSON body that the byte limit alone does not bound.
// JSON.parse survives deep nesting but slowly (0.4 s for a 2 MB [[[[...]]]]),
// and anything recursive downstream (JSON.stringify in a log line, structured
// clone over IPC, a recursive schema) would overflow the stack on it; no
// request the API accepts needs more than a few levels. Two checks, one per layer:
//   - parseJsonBody: a byte scan of the raw body before JSON.parse (rejects
//     invalid UTF-8 and deep nesting without parsing);
//   - assertJsonLimits: the same depth rule over an already parsed value, run by
//     parseBody so every endpoint is covered whatever the parser in front of it.
import { isUtf8 } from "node:buffer";
import { ApiError, type ErrorCode } from "../errors.js";

/** The deepest nesting of arrays and objects a request body may have (the body object itself is level 1). */
export const MAX_JSON_DEPTH = 64;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The nesting depth of the JSON text in `raw`, scanning bytes once and stopping
 * as soon as it passes `stopAbove`. Brackets inside strings do not count. The
 * text need not be valid JSON: a malformed body is JSON.parse's to reject.
 */
export function jsonNestingDepth(raw: Uint8Array, stopAbove = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) {
      inString = true;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if ((b === CLOSE_BRACE || b === CLOSE_BRACKET) && depth > 0) {
      depth--;
    }
  }
  return max;
}

function tooDeep(maxDepth: number): ApiError {
  return new ApiError("invalid_body", `The request body nests arrays and objects more than ${maxDepth} levels deep.`);
}

/**
 * Throws a 400 when a parsed body nests deeper than `maxDepth`, or has a key
 * named `__proto__` anywhere (zod drops such keys from records without a word,
 * so `logit_bias: {"__proto__": 5}` would pass as an empty map). Iterative: a
 * body nested a million levels deep costs no stack.
 */
export function assertJsonLimits(value: unknown, maxDepth = MAX_JSON_DEPTH): void {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value, depth: 1, path: "" }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.value === null || typeof top.value !== "object") continue;
    if (top.depth > maxDepth) throw tooDeep(maxDepth);
    // Only containers are pushed: a 100 000-element array of numbers costs one pass, no allocation.
    if (Array.isArray(top.value)) {
      top.value.forEach((v, i) => {
        if (v !== null && typeof v === "object") stack.push({ value: v, depth: top.depth + 1, path: `${top.path}[${i}]` });
      });
      continue;
    }
    for (const [key, v] of Object.entries(top.value)) {
      const path = top.path ? `${top.path}.${key}` : key;
      if (key === "__proto__") throw new ApiError("invalid_value", `Invalid '${path}': '__proto__' is not an allowed key.`, path);
      if (v !== null && typeof v === "object") stack.push({ value: v, depth: top.depth + 1, path });
    }
  }
}

/**
 * Counts logit_bias entries before anything reads them: zod took 300-400 ms
 * (and the JSON limits walk 60-80 ms) of the front's event loop over 100,000
 * entries before refusing them, stalling every tenant's streams. Stops counting
 * at the first entry too many.
 */
export function assertLogitBiasSize(bias: unknown, maxEntries: number): void {
  if (bias === null || typeof bias !== "object" || Array.isArray(bias)) return;
  let n = 0;
  for (const key in bias) {
    if (!Object.hasOwn(bias, key)) continue;
    if (++n > maxEntries) throw new ApiError("invalid_value", `Invalid 'logit_bias': must have at most ${maxEntries} entries.`, "logit_bias");
  }
}

export interface ParseLimits {
  maxDepth: number;
  maxLogitBiasEntries: number;
}

/** One body for the parse worker (its bytes transferred, not copied). */
export interface ParseJob {
  id: number;
  body: ArrayBuffer;
  limits: ParseLimits;
}

export type ParseReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { code: ErrorCode; message: string; param: string | null } };

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * A UTF-8 JSON request body as body-parser's strict json() parses it (empty:
 * {}; the text must start with an object or array), with the byte checks of
 * jsonBodyVerify before JSON.parse and the shape checks that refuse a body
 * outright after it. Throws the ApiError the client gets.
 */
export function parseJsonBody(raw: Buffer, limits: ParseLimits): unknown {
  if (raw.length === 0) return {};
  if (!isUtf8(raw)) throw new ApiError("invalid_json", "We could not parse the JSON body of your request: it is not valid UTF-8.");
  if (jsonNestingDepth(raw, limits.maxDepth) > limits.maxDepth) throw tooDeep(limits.maxDepth);
  let first = 0;
  while (first < raw.length && WHITESPACE.has(raw[first]!)) first++;
  if (raw[first] !== OPEN_BRACE && raw[first] !== OPEN_BRACKET) throw notJson();
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch {
    throw notJson();
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    assertLogitBiasSize((value as Record<string, unknown>).logit_bias, limits.maxLogitBiasEntries);
  }
  assertJsonLimits(value, limits.maxDepth);
  return value;
}

function notJson(): ApiError {
  return new ApiError("invalid_json", "We could not parse the JSON body of your request: it is not valid JSON.");
}
