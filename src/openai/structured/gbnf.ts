// A translated schema (grammarSchema.ts) → the GBNF the engine samples with,
// for what node-llama-cpp's own JSON grammar cannot carry: numeric bounds
// (integer ranges digit by digit, number bounds where whole numbers decide)
// and string formats beyond date/time. The JSON is written compactly (no
// whitespace), every value in the same canonical form JSON.parse reads back:
// whatever the grammar lets a model write validates against the schema.
//
// Pure: text in, text out. The engine compiles the result (GrammarSpec "gbnf").
import { digitRunsGbnf, integerRange } from "./integerRange.js";
import { patternGbnf } from "./pattern.js";
import type { GrammarSchema, JsonValue } from "./grammarSchema.js";

/** The largest integer part a number may have: 16 digits, as node-llama-cpp's own number rule. */
export const MAX_INTEGER_DIGITS = 16;
const CAP = 10n ** BigInt(MAX_INTEGER_DIGITS) - 1n;

/** Literal text before and after the value, optionally repeated with a separator (tool-call blocks). */
export interface GbnfWrap {
  prefix: string;
  suffix: string;
  separator: string;
  repeat: boolean;
}

/** A GBNF string literal for `text`. */
export function gbnfLiteral(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be escaped
  const escaped = text.replace(/[\\"\u0000-\u001f\u007f]/g, (c) =>
    c === "\\" || c === '"' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return `"${escaped}"`;
}

const FIXED_RULES: Record<string, string> = {
  // Any JSON character but quote, backslash and controls; escapes, with \u limited to non-surrogates
  // (a lone half is invalid for strict parsers and would make a string look longer than it is).
  char: '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt] | "\\\\u" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})',
  string: '"\\"" char* "\\""',
  integer: '"-"? ("0" | [1-9] [0-9]{0,15})',
  number: '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?',
  value: 'object | array | string | number | "true" | "false" | "null"',
  object: '"{" (string ":" value ("," string ":" value)*)? "}"',
  array: '"[" (value ("," value)*)? "]"',
  frac: '("." [0-9]{1,16})?',
  "zero-frac": '("." "0"{1,16})?',
  hex: "[0-9a-fA-F]",
  "date-part":
    '[0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02" "-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))',
  "time-part": '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])',
  label: "[a-zA-Z0-9] ([a-zA-Z0-9-]{0,61} [a-zA-Z0-9])?",
  octet: digitRunsGbnf(integerRange(0n, 255n)),
};

/** What each supported `format` writes (inside the quotes). */
const FORMATS: Record<string, string> = {
  date: "date-part",
  time: "time-part",
  "date-time": 'date-part "T" time-part',
  uuid: 'hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}',
  ipv4: 'octet "." octet "." octet "." octet',
  // At most 3 labels keep a hostname within 253 characters.
  hostname: 'label ("." label){0,2}',
  email: '[a-zA-Z0-9!#$%&\'*+/=?^_`{|}~-]{1,64} ("." [a-zA-Z0-9!#$%&\'*+/=?^_`{|}~-]{1,64}){0,3} "@" label ("." label){0,2}',
};
export const GBNF_FORMATS: ReadonlySet<string> = new Set(Object.keys(FORMATS));

export function toGbnf(schema: GrammarSchema, wrap?: GbnfWrap): string {
  return new Emitter().file(schema, wrap);
}

class Emitter {
  private readonly rules = new Map<string, string>();
  private readonly byBody = new Map<string, string>();
  private readonly defs = new Map<string, { name: string; schema: GrammarSchema }>();
  private readonly used = new Set<string>();

  file(schema: GrammarSchema, wrap?: GbnfWrap): string {
    const body = this.value(schema);
    let root: string;
    if (wrap) {
      const one = `${gbnfLiteral(wrap.prefix)} json-value ${gbnfLiteral(wrap.suffix)}`;
      this.rules.set("json-value", body);
      root = wrap.repeat ? `${one} (${gbnfLiteral(wrap.separator)} ${one})*` : one;
    } else root = body;
    for (const name of this.used) if (FIXED_RULES[name] !== undefined) this.rules.set(name, FIXED_RULES[name]!);
    return [`root ::= ${root}`, ...[...this.rules].map(([name, b]) => `${name} ::= ${b}`)].join("\n");
  }

  /** A fixed helper rule, emitted once when used. */
  private fixed(name: string): string {
    if (!this.used.has(name)) {
      this.used.add(name);
      // Fixed rules refer to each other.
      for (const dep of FIXED_RULES[name]!.match(/[a-z][a-z-]*/g) ?? []) if (FIXED_RULES[dep] !== undefined && dep !== name) this.fixed(dep);
    }
    return name;
  }

  /** A named rule for `body`, shared by every identical body. */
  private rule(body: string): string {
    const hit = this.byBody.get(body);
    if (hit) return hit;
    const name = `r${this.byBody.size}`;
    this.byBody.set(body, name);
    this.rules.set(name, body);
    return name;
  }

  private value(s: GrammarSchema): string {
    if (s.$defs !== undefined) {
      for (const [defName, def] of Object.entries(s.$defs as Record<string, GrammarSchema>)) {
        this.defs.set(`#/$defs/${defName}`, { name: `def${this.defs.size}`, schema: def });
      }
      for (const { name, schema } of this.defs.values()) if (!this.rules.has(name)) this.rules.set(name, this.value(schema));
    }
    if (typeof s.$ref === "string") return this.defs.get(s.$ref)!.name;
    if (Array.isArray(s.oneOf)) return this.rule(s.oneOf.map((alt) => this.value(alt as GrammarSchema)).join(" | "));
    if (s.const !== undefined) return gbnfLiteral(JSON.stringify(s.const));
    if (Array.isArray(s.enum)) return this.rule(s.enum.map((v) => gbnfLiteral(JSON.stringify(v))).join(" | "));
    switch (s.type) {
      case "string":
        return this.string(s);
      case "integer":
        return this.integer(s);
      case "number":
        return this.number(s);
      case "boolean":
        return '("true" | "false")';
      case "null":
        return '"null"';
      case "object":
        return this.object(s);
      case "array":
        return this.array(s);
      default:
        return this.fixed("value"); // ANY: { oneOf: [...] } never gets here; a bare schema does
    }
  }

  private string(s: GrammarSchema): string {
    if (typeof s.pattern === "string") return this.rule(`"\\"" ${patternGbnf(s.pattern).gbnf} "\\""`);
    if (typeof s.format === "string") return this.rule(`"\\"" ${this.withFixed(FORMATS[s.format]!)} "\\""`);
    const min = (s.minLength as number | undefined) ?? 0;
    const max = s.maxLength as number | undefined;
    if (min === 0 && max === undefined) return this.fixed("string");
    this.fixed("char");
    return this.rule(`"\\"" char${repeat(min, max)} "\\""`);
  }

  /** Marks the fixed rules a body refers to as used. */
  private withFixed(body: string): string {
    for (const name of body.match(/[a-z][a-z-]*/g) ?? []) if (FIXED_RULES[name] !== undefined) this.fixed(name);
    return body;
  }

  private integer(s: GrammarSchema): string {
    if (s.minimum === undefined && s.maximum === undefined) return this.fixed("integer");
    const lo = s.minimum === undefined ? -CAP : BigInt(s.minimum as number);
    const hi = s.maximum === undefined ? CAP : BigInt(s.maximum as number);
    return this.rule(digitRunsGbnf(integerRange(lo, hi)));
  }

  /**
   * Numbers between whole-number bounds (either may be absent), or of one sign
   * (exclusiveMinimum / exclusiveMaximum 0): the integer part is a range, the
   * fraction free, except at the bound itself, where only zeros may follow.
   * No exponent: "1e3" would escape the integer part's range.
   */
  private number(s: GrammarSchema): string {
    const bounded = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"].some((k) => s[k] !== undefined);
    if (!bounded) return this.fixed("number");
    this.fixed("frac");
    this.fixed("zero-frac");
    if (s.exclusiveMinimum === 0 || s.exclusiveMaximum === 0) {
      const positive = `${this.rule(digitRunsGbnf(integerRange(1n, CAP)))} frac | "0." "0"{0,15} [1-9] [0-9]{0,15}`;
      return this.rule(s.exclusiveMinimum === 0 ? positive : `"-" (${positive})`);
    }
    const lo = s.minimum === undefined ? null : BigInt(s.minimum as number);
    const hi = s.maximum === undefined ? null : BigInt(s.maximum as number);
    const alts: string[] = [];
    // x >= 0: its integer part in [max(lo, 0), hi), any fraction; or exactly hi.
    if (hi === null || hi >= 0n) alts.push(...this.side(lo !== null && lo > 0n ? lo : 0n, hi, ""));
    // x < 0, written "-" y: y in [max(-hi, 0), -lo].
    if (lo === null || lo < 0n) alts.push(...this.side(hi !== null && hi < 0n ? -hi : 0n, lo === null ? null : -lo, '"-" '));
    return this.rule(alts.join(" | "));
  }

  /** Non-negative values in [from, to] (to null: unbounded), as alternatives with a sign prefix. */
  private side(from: bigint, to: bigint | null, sign: string): string[] {
    const out: string[] = [];
    const below = to === null ? CAP : to - 1n;
    if (from <= below) out.push(`${sign}${this.rule(digitRunsGbnf(integerRange(from, below)))} frac`);
    if (to !== null) out.push(`${sign}"${to}" zero-frac`);
    return out;
  }

  private object(s: GrammarSchema): string {
    const props = s.properties as Record<string, GrammarSchema> | undefined;
    const names = Object.keys(props ?? {});
    if (names.length > 0) {
      const fields = names.map((n, i) => `${i > 0 ? '"," ' : ""}${gbnfLiteral(`${JSON.stringify(n)}:`)} ${this.value(props![n]!)}`);
      return this.rule(`"{" ${fields.join(" ")} "}"`);
    }
    const additional = s.additionalProperties;
    if (additional === false || additional === undefined) return '"{}"';
    const valueRule = additional === true ? this.fixed("value") : this.value(additional as GrammarSchema);
    const kv = `${this.fixed("string")} ":" ${valueRule}`;
    const max = s.maxProperties as number | undefined;
    if (max === 0) return '"{}"';
    return this.rule(`"{" (${kv} ("," ${kv})${repeat(0, max === undefined ? undefined : max - 1)})? "}"`);
  }

  private array(s: GrammarSchema): string {
    const prefix = ((s.prefixItems as GrammarSchema[] | undefined) ?? []).map((p) => this.value(p));
    const min = Math.max(0, ((s.minItems as number | undefined) ?? 0) - prefix.length);
    const maxItems = s.maxItems as number | undefined;
    const max = maxItems === undefined ? undefined : maxItems - prefix.length;
    const item = s.items === undefined ? null : this.value(s.items as GrammarSchema);
    const parts = prefix.map((p, i) => (i > 0 ? `"," ${p}` : p));
    if (item !== null && max !== 0) {
      if (prefix.length > 0) parts.push(`("," ${item})${repeat(min, max)}`);
      else if (min > 0) parts.push(`${item} ("," ${item})${repeat(min - 1, max === undefined ? undefined : max - 1)}`);
      else parts.push(`(${item} ("," ${item})${repeat(0, max === undefined ? undefined : max - 1)})?`);
    }
    return this.rule(`"[" ${parts.join(" ")} "]"`.replace('"[" "]"', '"[]"'));
  }
}

function repeat(min: number, max: number | undefined): string {
  if (max === undefined) return min === 0 ? "*" : min === 1 ? "+" : `{${min},}`;
  if (min === max) return `{${min}}`;
  return `{${min},${max}}`;
}

export type { JsonValue };

/** Keywords of a translated schema that only the front's GBNF carries (node-llama-cpp's JSON grammar has none of them). */
const FRONT_ONLY = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "pattern"];

/**
 * Whether `schema` needs the front's GBNF. The others still go to
 * node-llama-cpp's JSON grammar, which the engine post-processes (whitespace
 * and all), so outputs that worked before are written as before.
 */
export function needsGbnf(schema: JsonValue): boolean {
  if (Array.isArray(schema)) return schema.some(needsGbnf);
  if (schema === null || typeof schema !== "object") return false;
  // A schema node: a numeric or format keyword beside its type. (Property maps are walked as values.)
  const type = schema.type;
  if ((type === "integer" || type === "number" || type === "string") && FRONT_ONLY.some((k) => k in schema && typeof schema[k] !== "object")) return true;
  return Object.values(schema).some(needsGbnf);
}
