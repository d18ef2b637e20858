// Limits on the shape of a JSON body that the byte limit alone does not bound.
// JSON.parse itself survives deep nesting, but anything recursive downstream
// (JSON.stringify in a log line, structured clone over IPC, a recursive schema)
// would overflow the stack on a body like [[[[...]]]] 100 000 levels deep, and no
// request the API accepts needs more than a few levels. Two checks, one per layer:
//   - jsonBodyVerify: body-parser's `verify` hook, a byte scan of the raw body
//     before JSON.parse (rejects invalid UTF-8 and deep nesting without parsing);
//   - assertJsonLimits: the same depth rule over an already parsed value, run by
//     parseBody so every endpoint is covered whatever the parser in front of it.
import { isUtf8 } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError } from "../errors.js";

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

export interface JsonBodyLimits {
  /** Default MAX_JSON_DEPTH. */
  maxDepth?: number;
}

/**
 * A `verify` option for express.json(): refuses a UTF-8 body that is not valid
 * UTF-8 (body-parser would otherwise decode it lossily, replacing bytes with
 * U+FFFD, and generate from a prompt the client never sent) and a body nested
 * deeper than `maxDepth`, both as 400s before JSON.parse runs. It throws an
 * ApiError, which body-parser passes on to the error handler unchanged
 * (http-errors keeps an error's own status and type).
 */
export function jsonBodyVerify(limits: JsonBodyLimits = {}) {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  return (_req: IncomingMessage, _res: ServerResponse, buf: Buffer, encoding: string): void => {
    if (/^utf-?8$/i.test(encoding) && !isUtf8(buf)) {
      throw new ApiError("invalid_json", "We could not parse the JSON body of your request: it is not valid UTF-8.");
    }
    if (jsonNestingDepth(buf, maxDepth) > maxDepth) throw tooDeep(maxDepth);
  };
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
