// Output grammars: a GrammarSpec → a compiled LlamaGrammar, cached by spec.
//
// node-llama-cpp turns a GbnfJsonSchema into GBNF; three things in that text
// would break the promise that a finished output validates against the schema,
// so they are rewritten here (each rewrite checks the text it replaces, so an
// upgrade that changes the generator fails loudly instead of silently):
//   - the root ends in "\n\n\n\n" [\n]*, a stop marker for node-llama-cpp's
//     chat loop: it would put newlines in the output and let a model emit them
//     until max_tokens. Without it the grammar is complete at the closing
//     brace, where only end-of-generation is allowed, so generation ends there.
//   - integers may carry an exponent ("5e-1" is 0.5, not an integer): dropped;
//     other numbers get at most a two-digit exponent (a 16-digit one overflows
//     to Infinity).
//   - \uD800-\uDFFF escapes (surrogate halves) would let a string look longer
//     to the grammar than it is to JSON Schema (minLength), or be lone halves
//     that strict JSON parsers reject: excluded (the characters themselves are
//     still written as UTF-8).
import { LlamaGrammar, LlamaJsonSchemaGrammar, type GbnfJsonSchema, type Llama } from "node-llama-cpp";
import type { GrammarSpec, GrammarWrap } from "./protocol.js";

const ROOT_SUFFIX = ' "\\n\\n\\n\\n" [\\n]*';
const NUMBER_RULES: Record<string, { from: string; to: string }> = {
  "integer-number-rule": {
    from: '"-"? ("0" | [1-9] [0-9]{0,15}) ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?',
    to: '"-"? ("0" | [1-9] [0-9]{0,15})',
  },
  "fractional-number-rule": {
    from: '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?',
    to: '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?',
  },
};
const UNICODE_ESCAPE = '"\\\\u" [0-9a-fA-F]{4}';
const NON_SURROGATE_ESCAPE = '"\\\\u" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})';

/** response_format json_object: any JSON object. */
const ANY_OBJECT: GbnfJsonSchema = { type: "object", additionalProperties: true };

/** A GBNF string literal for `text`. */
export function gbnfLiteral(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be escaped
  const escaped = text.replace(/[\\"\u0000-\u001f\u007f]/g, (c) =>
    c === "\\" || c === '"' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return `"${escaped}"`;
}

/** node-llama-cpp's GBNF for a JSON schema → the grammar llamux samples with (see the header). */
export function finishJsonGrammar(gbnf: string, wrap?: GrammarWrap): string {
  const lines = gbnf.split("\n");
  let sawRoot = false;
  const out = lines.map((line) => {
    if (line.startsWith("root ::= ")) {
      if (!line.endsWith(ROOT_SUFFIX)) throw new Error(`node-llama-cpp's JSON grammar root changed: ${line.slice(-40)}`);
      sawRoot = true;
      const body = line.slice("root ::= ".length, -ROOT_SUFFIX.length);
      return `${wrap ? "json-value" : "root"} ::= ${body}`;
    }
    const name = line.slice(0, line.indexOf(" ::= "));
    const rule = NUMBER_RULES[name];
    if (rule) {
      const body = line.slice(name.length + " ::= ".length);
      if (body !== rule.from) throw new Error(`node-llama-cpp's ${name} changed: ${body}`);
      return `${name} ::= ${rule.to}`;
    }
    if (name === "string-char-rule") {
      if (!line.includes(UNICODE_ESCAPE)) throw new Error(`node-llama-cpp's string-char-rule changed: ${line}`);
      return line.replace(UNICODE_ESCAPE, NON_SURROGATE_ESCAPE);
    }
    return line;
  });
  if (!sawRoot) throw new Error("node-llama-cpp's JSON grammar has no root rule");
  if (wrap) {
    const one = `${gbnfLiteral(wrap.prefix)} json-value ${gbnfLiteral(wrap.suffix)}`;
    out.unshift(wrap.repeat ? `root ::= ${one} (${gbnfLiteral(wrap.separator)} ${one})*` : `root ::= ${one}`);
  }
  return out.join("\n");
}

const MAX_CACHED = 64;
const caches = new WeakMap<Llama, Map<string, LlamaGrammar>>();

/**
 * The compiled grammar for `spec`, built once per distinct spec (a client
 * repeating its schema costs nothing after the first request). Synchronous:
 * node-llama-cpp compiles grammars in their constructor. Throws on a schema
 * node-llama-cpp cannot compile.
 */
export function grammarFor(llama: Llama, spec: GrammarSpec): LlamaGrammar {
  let cache = caches.get(llama);
  if (!cache) caches.set(llama, (cache = new Map()));
  const key = JSON.stringify(spec);
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // most recently used last
    cache.set(key, hit);
    return hit;
  }
  if (spec.kind === "gbnf") {
    const grammar = new LlamaGrammar(llama, { grammar: spec.grammar });
    cache.set(key, grammar);
    if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
    return grammar;
  }
  const schema = spec.kind === "json" ? ANY_OBJECT : (spec.schema as GbnfJsonSchema);
  const wrap = spec.kind === "json_schema" ? spec.wrap : undefined;
  // The constructors are the synchronous form of llama.createGrammar*(); they
  // compile the text natively (the first one only to hand us its GBNF).
  // (Its generic types expect a schema literal known at compile time; this one is data.)
  const generated = new LlamaJsonSchemaGrammar(llama, schema as never).grammar;
  const grammar = new LlamaGrammar(llama, { grammar: finishJsonGrammar(generated, wrap) });
  cache.set(key, grammar);
  if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
  return grammar;
}
