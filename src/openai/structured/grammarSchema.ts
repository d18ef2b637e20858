// A client's JSON Schema → the subset the engine's output grammar enforces
// (node-llama-cpp's GbnfJsonSchema), refusing what it cannot enforce.
//
// The promise of structured output is that whatever the grammar lets the model
// write validates against the client's schema. So the translation keeps a
// keyword only where the grammar enforces it exactly, narrows where narrowing
// keeps every output valid (every declared property is always written, extra
// properties never are beside declared ones), and refuses the rest with a 400
// naming the keyword and where it sits. Annotations (title, description...)
// are dropped. Pure: no node-llama-cpp here, the front validates once.
//
// A schema's cost is bounded too (SCHEMA_LIMITS, close to OpenAI's documented
// structured-output limits): the grammar is compiled and evaluated at every
// token in the engine that all tenants share, and a 100,000-value enum once
// held it for over a minute.
import { ApiError } from "../../errors.js";
import { GBNF_FORMATS } from "./gbnf.js";
import { PatternError, patternGbnf } from "./pattern.js";
import { checkRecursion, SCHEMA_LIMITS, SchemaBudget } from "./schemaCost.js";

export { SCHEMA_LIMITS, SchemaBudget };

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** node-llama-cpp's GbnfJsonSchema, as plain JSON (the engine hands it to createGrammarForJsonSchema). */
export type GrammarSchema = { [key: string]: JsonValue };

/** Keywords that say nothing about validity: accepted and dropped. */
const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"]);
/** Root-only annotations. */
const ROOT_ONLY = new Set(["$schema", "$id", "$defs"]);
/** Everything the translation understands; any other keyword is refused by name. */
const KNOWN = new Set([
  "type",
  "enum",
  "const",
  "anyOf",
  "$ref",
  "properties",
  "required",
  "additionalProperties",
  "minProperties",
  "maxProperties",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "format",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "pattern",
]);
/** Why a keyword that JSON Schema has (and the translation does not) is refused. */
const WHY_NOT: Record<string, string> = {
  oneOf: "the grammar cannot enforce that exactly one alternative matches; use anyOf",
  allOf: "the grammar cannot intersect schemas",
  not: "the grammar cannot exclude a schema",
  if: "conditional schemas cannot be enforced by the grammar",
  // biome-ignore lint/suspicious/noThenProperty: JSON Schema's keyword, a key of a plain table, never awaited
  then: "conditional schemas cannot be enforced by the grammar",
  else: "conditional schemas cannot be enforced by the grammar",
  patternProperties: "regular expressions cannot be enforced by the grammar",
  propertyNames: "the grammar cannot constrain property names",
  uniqueItems: "the grammar cannot keep array items distinct",
  contains: "the grammar cannot enforce 'contains'",
  minContains: "the grammar cannot enforce 'contains'",
  maxContains: "the grammar cannot enforce 'contains'",
  dependentRequired: "the grammar cannot enforce dependencies",
  dependentSchemas: "the grammar cannot enforce dependencies",
  dependencies: "the grammar cannot enforce dependencies",
  unevaluatedProperties: "not supported by the grammar",
  unevaluatedItems: "not supported by the grammar",
  definitions: "use $defs (at the root) instead",
  $anchor: "only '#/$defs/<name>' references are supported",
  $dynamicRef: "only '#/$defs/<name>' references are supported",
  $dynamicAnchor: "only '#/$defs/<name>' references are supported",
  nullable: 'it is not JSON Schema (OpenAPI 3.0); use a type array such as ["string", "null"] or anyOf',
};
const FORMATS = GBNF_FORMATS;

const TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"] as const;
type TypeName = (typeof TYPES)[number];

/** The "any JSON value" schema: the grammar has no keyword for it, so it is spelled out. */
const ANY: GrammarSchema = {
  oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }],
};

export interface TranslateOptions {
  /** The request parameter the schema came in, for error messages (e.g. "response_format.json_schema.schema"). */
  param: string;
  /** Shared with the request's other schemas; absent: this schema's own. */
  budget?: SchemaBudget;
}

export function toGrammarSchema(schema: unknown, opts: TranslateOptions): GrammarSchema {
  return new Translator(opts.param, schema, opts.budget ?? new SchemaBudget()).root();
}

class Translator {
  private readonly defs: Record<string, unknown>;

  constructor(
    private readonly param: string,
    private readonly rootSchema: unknown,
    private readonly budget: SchemaBudget,
  ) {
    const defs = isObject(rootSchema) ? rootSchema.$defs : undefined;
    if (defs !== undefined && !isObject(defs)) this.invalid("#", "'$defs' must be an object of schemas");
    this.defs = (defs as Record<string, unknown> | undefined) ?? {};
  }

  root(): GrammarSchema {
    if (!isObject(this.rootSchema)) this.invalid("#", "the schema must be a JSON object");
    const out = this.schema(this.rootSchema, "#", true, 0);
    const names = Object.keys(this.defs);
    if (names.length === 0) return out;
    const $defs: GrammarSchema = {};
    for (const name of names) {
      this.spend("stringChars", name.length, `#/$defs/${escapePointer(name)}`);
      $defs[name] = this.schema(this.defs[name], `#/$defs/${name}`, false, 0);
    }
    checkRecursion(out, $defs as Record<string, GrammarSchema>, (at, why) => this.invalid(at, why));
    // node-llama-cpp resolves #/$defs/... against the $defs of enclosing schemas:
    // a wrapper that declares them reaches every reference below it.
    return { oneOf: [out], $defs };
  }

  /** `depth`: how many objects and arrays enclose this schema. */
  private schema(value: unknown, at: string, isRoot: boolean, depth: number): GrammarSchema {
    if (depth > SCHEMA_LIMITS.depth) this.tooCostly(at, `more than ${SCHEMA_LIMITS.depth} levels of nested objects and arrays`);
    if (value === true) return ANY;
    if (value === false) this.invalid(at, "the schema `false` matches nothing");
    if (!isObject(value)) this.invalid(at, "a schema must be an object or a boolean");
    for (const key of Object.keys(value)) {
      if (ANNOTATIONS.has(key) || KNOWN.has(key)) continue;
      if (ROOT_ONLY.has(key)) {
        if (isRoot) continue;
        this.unsupported(at, key, "only allowed at the root of the schema");
      }
      this.unsupported(at, key, WHY_NOT[key] ?? "unknown to the output grammar");
    }
    const s = value as Record<string, unknown>;
    const siblings = Object.keys(s).filter((k) => KNOWN.has(k));
    if (s.$ref !== undefined) {
      this.alone(at, "$ref", siblings);
      return { $ref: this.ref(s.$ref, at) };
    }
    if (s.anyOf !== undefined) {
      this.alone(at, "anyOf", siblings);
      if (!Array.isArray(s.anyOf) || s.anyOf.length === 0) this.invalid(at, "'anyOf' must be a non-empty array of schemas");
      this.spend("anyOfBranches", s.anyOf.length, at);
      return { oneOf: s.anyOf.map((alt, i) => this.schema(alt, `${at}/anyOf/${i}`, false, depth)) };
    }
    const types = this.types(s, at);
    if (s.const !== undefined || s.enum !== undefined) return this.literals(s, at, types);
    const chosen = types ?? inferTypes(s);
    if (chosen.length === 1) return this.typed(s, at, chosen[0]!, depth);
    return { oneOf: chosen.map((t) => this.typed(s, at, t, depth)) };
  }

  /** $ref and anyOf carry no other constraint here: JSON Schema would apply both, the grammar only one. */
  private alone(at: string, keyword: string, siblings: string[]): void {
    const other = siblings.find((k) => k !== keyword);
    if (other !== undefined) this.unsupported(at, other, `cannot be combined with '${keyword}' in the same schema`);
  }

  private ref(ref: unknown, at: string): string {
    const prefix = "#/$defs/";
    if (typeof ref !== "string" || !ref.startsWith(prefix)) this.unsupported(at, "$ref", "only '#/$defs/<name>' references are supported");
    const name = (ref as string).slice(prefix.length);
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) this.unsupported(at, "$ref", "a $defs name must be letters, digits, '_', '.' or '-'");
    if (!(name in this.defs)) this.invalid(at, `'$ref' ${JSON.stringify(ref)} names no entry of the root '$defs'`);
    return ref as string;
  }

  private types(s: Record<string, unknown>, at: string): TypeName[] | null {
    if (s.type === undefined) return null;
    const list = Array.isArray(s.type) ? s.type : [s.type];
    if (list.length === 0) this.invalid(at, "'type' must not be an empty array");
    for (const t of list) if (!TYPES.includes(t as TypeName)) this.invalid(at, `unknown type ${JSON.stringify(t)}`);
    return [...new Set(list as TypeName[])];
  }

  /** const/enum: the grammar writes one of the values verbatim; they must be primitives of the declared type. */
  private literals(s: Record<string, unknown>, at: string, types: TypeName[] | null): GrammarSchema {
    if (s.const !== undefined && s.enum !== undefined) this.unsupported(at, "const", "cannot be combined with 'enum'");
    const keyword = s.const !== undefined ? "const" : "enum";
    const values = keyword === "const" ? [s.const] : s.enum;
    if (!Array.isArray(values) || values.length === 0) this.invalid(at, "'enum' must be a non-empty array");
    this.spend("enumValues", values.length, at, keyword);
    this.spend(
      "stringChars",
      values.reduce((n: number, v) => n + (typeof v === "string" ? v.length : 0), 0),
      at,
      keyword,
    );
    for (const v of values as unknown[]) {
      if (v !== null && typeof v === "object") this.unsupported(at, keyword, "only strings, numbers, booleans and null can be listed");
      if (types && !types.some((t) => matchesType(v, t))) this.invalid(at, `${keyword} value ${JSON.stringify(v)} is not of type ${types.join(" or ")}`);
    }
    return keyword === "const" ? { const: s.const as JsonValue } : { enum: values as JsonValue[] };
  }

  private typed(s: Record<string, unknown>, at: string, type: TypeName, depth: number): GrammarSchema {
    switch (type) {
      case "string":
        return this.string(s, at);
      case "object":
        return this.object(s, at, depth + 1);
      case "array":
        return this.array(s, at, depth + 1);
      case "integer":
        return this.integer(s, at);
      case "number":
        return this.number(s, at);
      default:
        return { type };
    }
  }

  /**
   * Integer bounds, exclusive or not, become one inclusive whole-number range
   * the grammar spells digit by digit. `multipleOf` only as 1 (every integer).
   */
  private integer(s: Record<string, unknown>, at: string): GrammarSchema {
    this.multipleOf(s, at, true);
    let lo: number | undefined;
    let hi: number | undefined;
    const raise = (v: number) => (lo = lo === undefined ? v : Math.max(lo, v));
    const lower = (v: number) => (hi = hi === undefined ? v : Math.min(hi, v));
    const min = this.bound(s, "minimum", at);
    const max = this.bound(s, "maximum", at);
    const xmin = this.bound(s, "exclusiveMinimum", at);
    const xmax = this.bound(s, "exclusiveMaximum", at);
    if (min !== undefined) raise(Math.ceil(min));
    if (xmin !== undefined) raise(Math.floor(xmin) + 1);
    if (max !== undefined) lower(Math.floor(max));
    if (xmax !== undefined) lower(Math.ceil(xmax) - 1);
    if (lo !== undefined && hi !== undefined && lo > hi) this.invalid(at, "no integer lies within its bounds");
    return { type: "integer", ...(lo !== undefined ? { minimum: lo } : {}), ...(hi !== undefined ? { maximum: hi } : {}) };
  }

  /**
   * Number bounds the grammar enforces exactly: whole-number minimum and
   * maximum (the integer part is a range, the fraction free below the upper
   * bound), or exclusiveMinimum / exclusiveMaximum 0 alone (the sign). Others
   * would need decimal arithmetic in the grammar: refused by name.
   */
  private number(s: Record<string, unknown>, at: string): GrammarSchema {
    this.multipleOf(s, at, false);
    const min = this.bound(s, "minimum", at);
    const max = this.bound(s, "maximum", at);
    const xmin = this.bound(s, "exclusiveMinimum", at);
    const xmax = this.bound(s, "exclusiveMaximum", at);
    if (xmin !== undefined || xmax !== undefined) {
      const keyword = xmin !== undefined ? "exclusiveMinimum" : "exclusiveMaximum";
      const value = xmin ?? xmax;
      if (value !== 0 || [min, max, xmin !== undefined ? xmax : xmin].some((v) => v !== undefined)) {
        this.unsupported(at, keyword, "on a number only 0 (the sign) can be enforced by the grammar, alone; use whole-number 'minimum'/'maximum' otherwise");
      }
      return { type: "number", [keyword]: 0 };
    }
    for (const [keyword, v] of [
      ["minimum", min],
      ["maximum", max],
    ] as const) {
      if (v !== undefined && !Number.isInteger(v)) this.unsupported(at, keyword, "on a number only whole-number bounds can be enforced by the grammar");
    }
    if (min !== undefined && max !== undefined && min > max) this.invalid(at, "'maximum' is below 'minimum'");
    return { type: "number", ...(min !== undefined ? { minimum: min } : {}), ...(max !== undefined ? { maximum: max } : {}) };
  }

  private bound(s: Record<string, unknown>, keyword: string, at: string): number | undefined {
    const v = s[keyword];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) this.invalid(at, `'${keyword}' must be a number`);
    return v as number;
  }

  private multipleOf(s: Record<string, unknown>, at: string, integer: boolean): void {
    if (s.multipleOf === undefined) return;
    if (!(integer && s.multipleOf === 1)) this.unsupported(at, "multipleOf", "the grammar cannot enforce multiples (only multipleOf 1 on an integer)");
  }

  private string(s: Record<string, unknown>, at: string): GrammarSchema {
    const minLength = this.count(s, "minLength", at);
    const maxLength = this.count(s, "maxLength", at);
    this.spend("repetitions", Math.max(minLength ?? 0, maxLength ?? 0), at, maxLength !== undefined ? "maxLength" : "minLength");
    if (s.pattern !== undefined) return this.pattern(s, at, minLength, maxLength);
    if (s.format !== undefined) {
      if (typeof s.format !== "string" || !FORMATS.has(s.format)) {
        this.unsupported(at, "format", `only ${[...FORMATS].join(", ")} can be enforced by the grammar`);
      }
      if (minLength !== undefined || maxLength !== undefined) this.unsupported(at, "minLength", "cannot be combined with 'format'");
      return { type: "string", format: s.format as string };
    }
    if (minLength !== undefined && maxLength !== undefined && maxLength < minLength) this.invalid(at, "'maxLength' is below 'minLength'");
    return { type: "string", ...(minLength !== undefined ? { minLength } : {}), ...(maxLength !== undefined ? { maxLength } : {}) };
  }

  /** A pattern the grammar writes exactly (pattern.ts), alone: the grammar cannot intersect it with a format or lengths. */
  private pattern(s: Record<string, unknown>, at: string, minLength: number | undefined, maxLength: number | undefined): GrammarSchema {
    if (typeof s.pattern !== "string") this.invalid(at, "'pattern' must be a string");
    const pattern = s.pattern as string;
    try {
      new RegExp(pattern, "u");
    } catch {
      this.invalid(at, `'pattern' ${JSON.stringify(pattern.slice(0, 100))} is not a valid regular expression`);
    }
    if (s.format !== undefined) this.unsupported(at, "pattern", "cannot be combined with 'format' (the grammar enforces one or the other; keep one)");
    if (minLength !== undefined || maxLength !== undefined)
      this.unsupported(at, "pattern", "cannot be combined with 'minLength'/'maxLength' (bound the length in the pattern)");
    this.spend("stringChars", pattern.length, at, "pattern");
    try {
      this.spend("repetitions", patternGbnf(pattern).repetitions, at, "pattern");
    } catch (err) {
      if (err instanceof PatternError) this.unsupported(at, "pattern", `${err.message}`);
      throw err;
    }
    return { type: "string", pattern };
  }

  private object(s: Record<string, unknown>, at: string, depth: number): GrammarSchema {
    const props = s.properties;
    if (props !== undefined && !isObject(props)) this.invalid(at, "'properties' must be an object of schemas");
    const names = Object.keys((props as Record<string, unknown> | undefined) ?? {});
    const required = s.required;
    if (required !== undefined && (!Array.isArray(required) || !required.every((r) => typeof r === "string"))) {
      this.invalid(at, "'required' must be an array of property names");
    }
    const minProperties = this.count(s, "minProperties", at);
    const maxProperties = this.count(s, "maxProperties", at);
    this.spend("properties", names.length, at, "properties");
    this.spend(
      "stringChars",
      names.reduce((n, name) => n + name.length, 0),
      at,
      "properties",
    );
    if (names.length > 0) {
      // Every declared property is always written and no other one is, so
      // `required` holds when it names declared properties, and the count of
      // properties is exactly names.length.
      const undeclared = ((required as string[] | undefined) ?? []).find((r) => !names.includes(r));
      if (undeclared !== undefined) this.invalid(at, `'required' names '${undeclared}', which is not in 'properties'`);
      if (minProperties !== undefined && minProperties > names.length)
        this.unsupported(at, "minProperties", "exceeds the declared properties (the grammar writes exactly those)");
      if (maxProperties !== undefined && maxProperties < names.length)
        this.unsupported(at, "maxProperties", "is below the number of declared properties (the grammar writes all of them)");
      this.additional(s.additionalProperties, at, depth); // validated, then narrowed to none
      const properties: GrammarSchema = {};
      for (const name of names)
        properties[name] = this.schema((props as Record<string, unknown>)[name], `${at}/properties/${escapePointer(name)}`, false, depth);
      return { type: "object", properties, additionalProperties: false };
    }
    // No declared properties: a map of additional ones, or `{}`.
    if (((required as string[] | undefined) ?? []).length > 0) this.unsupported(at, "required", "needs the required properties declared in 'properties'");
    const additional = this.additional(s.additionalProperties, at, depth);
    if (additional === false) {
      if (minProperties !== undefined && minProperties > 0) this.unsupported(at, "minProperties", "cannot be met: the object can have no properties");
      return { type: "object", additionalProperties: false };
    }
    // Generated keys may repeat and JSON keeps one of each, so a minimum count cannot be promised.
    if (minProperties !== undefined && minProperties > 0) this.unsupported(at, "minProperties", "cannot be enforced on free-form keys");
    this.spend("repetitions", maxProperties ?? 0, at, "maxProperties");
    return { type: "object", additionalProperties: additional, ...(maxProperties !== undefined ? { maxProperties } : {}) };
  }

  /** additionalProperties → false, true (any value) or a translated schema; absent is JSON Schema's `true`. */
  private additional(value: unknown, at: string, depth: number): boolean | GrammarSchema {
    if (value === undefined || value === true) return true;
    if (value === false) return false;
    return this.schema(value, `${at}/additionalProperties`, false, depth);
  }

  private array(s: Record<string, unknown>, at: string, depth: number): GrammarSchema {
    const out: GrammarSchema = { type: "array" };
    if (Array.isArray(s.items)) this.unsupported(at, "items", "an array of schemas is draft-07 tuple syntax; use prefixItems");
    if (s.prefixItems !== undefined) {
      if (!Array.isArray(s.prefixItems)) this.invalid(at, "'prefixItems' must be an array of schemas");
      this.spend("repetitions", s.prefixItems.length, at, "prefixItems");
      out.prefixItems = s.prefixItems.map((item, i) => this.schema(item, `${at}/prefixItems/${i}`, false, depth));
    }
    const minItems = this.count(s, "minItems", at);
    let maxItems = this.count(s, "maxItems", at);
    this.spend("repetitions", Math.max(minItems ?? 0, maxItems ?? 0), at, maxItems !== undefined ? "maxItems" : "minItems");
    if (s.items === false) maxItems = Math.min(maxItems ?? Infinity, (out.prefixItems as unknown[] | undefined)?.length ?? 0);
    else if (s.items !== undefined) out.items = this.schema(s.items, `${at}/items`, false, depth);
    else out.items = ANY;
    const prefix = (out.prefixItems as unknown[] | undefined)?.length ?? 0;
    if (maxItems !== undefined && maxItems < Math.max(minItems ?? 0, prefix)) {
      this.unsupported(at, "maxItems", "is below minItems or the number of prefixItems (the grammar writes every prefix item)");
    }
    if (minItems !== undefined) out.minItems = minItems;
    if (maxItems !== undefined) out.maxItems = maxItems;
    return out;
  }

  private count(s: Record<string, unknown>, keyword: string, at: string): number | undefined {
    const v = s[keyword];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) this.invalid(at, `'${keyword}' must be a non-negative integer`);
    return v as number;
  }

  /** Charges `amount` to the request's budget, or refuses the schema naming the limit and where it was passed. */
  private spend(limit: Exclude<keyof typeof SCHEMA_LIMITS, "depth">, amount: number, at: string, keyword?: string): void {
    this.budget[limit] += amount;
    if (this.budget[limit] <= SCHEMA_LIMITS[limit]) return;
    const what: Record<typeof limit, string> = {
      properties: `more than ${SCHEMA_LIMITS.properties} object properties`,
      enumValues: `more than ${SCHEMA_LIMITS.enumValues} enum and const values`,
      anyOfBranches: `more than ${SCHEMA_LIMITS.anyOfBranches} anyOf alternatives`,
      stringChars: `more than ${SCHEMA_LIMITS.stringChars} characters of property names, definition names and enum values`,
      repetitions: `length and count bounds adding up to more than ${SCHEMA_LIMITS.repetitions}`,
    };
    this.tooCostly(at, `${what[limit]} in all${keyword ? ` (at '${keyword}')` : ""}`);
  }

  private tooCostly(at: string, what: string): never {
    throw new ApiError(
      "invalid_value",
      `Invalid '${this.param}': the schema has ${what}, reached at '${at}'; structured output allows at most that much.`,
      this.param,
    );
  }

  private unsupported(at: string, keyword: string, why: string): never {
    throw new ApiError("unsupported_parameter", `Unsupported keyword '${keyword}' at '${at}' in '${this.param}': ${why}.`, this.param);
  }

  private invalid(at: string, what: string): never {
    throw new ApiError("invalid_value", `Invalid '${this.param}' at '${at}': ${what}.`, this.param);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function matchesType(v: unknown, t: TypeName): boolean {
  switch (t) {
    case "null":
      return v === null;
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "number":
      return typeof v === "number";
    case "string":
    case "boolean":
      return typeof v === t;
    default:
      return false; // objects and arrays were refused before
  }
}

/**
 * Without `type` a schema allows every type, its keywords constraining only
 * their own. The grammar narrows to the types those keywords speak of (an
 * object for `properties`...), which keeps every output valid; none: any value.
 */
function inferTypes(s: Record<string, unknown>): TypeName[] {
  const types: TypeName[] = [];
  if (["properties", "required", "additionalProperties", "minProperties", "maxProperties"].some((k) => k in s)) types.push("object");
  if (["items", "prefixItems", "minItems", "maxItems"].some((k) => k in s)) types.push("array");
  if (["minLength", "maxLength", "format", "pattern"].some((k) => k in s)) types.push("string");
  if (["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"].some((k) => k in s)) types.push("number");
  return types.length > 0 ? types : ["string", "number", "boolean", "null", "object", "array"];
}

function escapePointer(name: string): string {
  return name.replace(/~/g, "~0").replace(/\//g, "~1");
}
