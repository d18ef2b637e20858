// OpenAI's own API description (shared/openai-openapi/openapi.json), read by the
// tests: the request schemas' property names for the spec walk, and ajv
// validators for the response schemas.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";

export const REPO_ROOT = path.resolve(fileURLToPath(new URL("../../../", import.meta.url)));
export const OPENAPI_PATH = path.resolve(REPO_ROOT, "../shared/openai-openapi/openapi.json");

type Schema = Record<string, unknown>;

let cached: { components: { schemas: Record<string, Schema> } } | null = null;

export function loadSpec(): { components: { schemas: Record<string, Schema> } } {
  cached ??= JSON.parse(fs.readFileSync(OPENAPI_PATH, "utf8"));
  return cached!;
}

function componentSchema(name: string): Schema {
  const schema = loadSpec().components.schemas[name];
  if (!schema) throw new Error(`no component schema ${name} in ${OPENAPI_PATH}`);
  return schema;
}

const refName = (ref: string): string => {
  const prefix = "#/components/schemas/";
  if (!ref.startsWith(prefix)) throw new Error(`unexpected $ref ${ref}`);
  return ref.slice(prefix.length);
};

/**
 * Every property name a request body of component `name` may carry: its own
 * `properties` plus those of every schema it pulls in through `allOf` and `$ref`.
 */
export function requestPropertyNames(name: string): string[] {
  const names = new Set<string>();
  const seen = new Set<string>();
  const walk = (schema: Schema): void => {
    if (typeof schema.$ref === "string") {
      const target = refName(schema.$ref);
      if (!seen.has(target)) {
        seen.add(target);
        walk(componentSchema(target));
      }
    }
    for (const part of (schema.allOf as Schema[] | undefined) ?? []) walk(part);
    for (const key of Object.keys((schema.properties as Schema | undefined) ?? {})) names.add(key);
  };
  seen.add(name);
  walk(componentSchema(name));
  return [...names].sort();
}

/**
 * The spec as ajv should read it:
 *  - it is OpenAPI 3.1 (JSON Schema 2020-12) with 3.0 leftovers, `nullable:
 *    true` beside `type`, `enum` or `$ref`: each such schema becomes
 *    `anyOf: [itself, {type: "null"}]`, which is what `nullable` means;
 *  - `discriminator` is an OpenAPI hint (ajv's own support needs a shape the
 *    spec does not always have): dropped, the oneOf it annotates still checks;
 *  - closed objects: a schema with `properties` (or an `allOf` of parts) and
 *    no word on extra ones gets `unevaluatedProperties: false`, so a misspelt
 *    or invented field in a response fails instead of passing unnoticed. The
 *    parts of an allOf stay open, since each sees only its own fields. llamux's documented
 *    extensions are declared in EXTENSION_PROPERTIES.
 */
function toAjvSchema(value: unknown, isNameMap = false, open = false): unknown {
  if (Array.isArray(value)) return value.map((v) => toAjvSchema(v));
  if (value === null || typeof value !== "object") return value;
  const out: Schema = {};
  for (const [k, v] of Object.entries(value)) {
    // In `properties` (and the like) keys are names, not keywords: a property named "nullable" stays.
    if (isNameMap) {
      out[k] = toAjvSchema(v);
      continue;
    }
    if (k === "nullable" || k === "discriminator") continue;
    // allOf members are parts of one object: closed each on its own, every part
    // would refuse the others' fields. The object holding the allOf is closed instead.
    if (k === "allOf" && Array.isArray(v)) {
      out[k] = v.map((member) => toAjvSchema(member, false, true));
      continue;
    }
    out[k] = toAjvSchema(v, k === "properties" || k === "patternProperties" || k === "$defs" || k === "dependentSchemas");
  }
  if (isNameMap) return out;
  const closable = (out.properties && !open) || out.allOf;
  if (closable && !("additionalProperties" in out) && !("unevaluatedProperties" in out)) out.unevaluatedProperties = false;
  if ((value as Schema).nullable === true) return { anyOf: [out, { type: "null" }] };
  return out;
}

/** Fields llamux adds to a spec object on purpose (README documents them). */
const EXTENSION_PROPERTIES: Record<string, Record<string, Schema>> = {
  // GET /v1/models: context length, slots, vocabulary, template, synthetic.
  Model: { meta: { type: "object" } },
  // Not an extension: OpenAI returns `store` on every Response (the spec's own
  // examples show it), but the schema does not list it.
  Response: { store: { type: "boolean" } },
};

/** Components some allOf names as a member (by $ref): they are parts of another object, so left open. */
function allOfMembers(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) allOfMembers(v, found);
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k === "allOf" && Array.isArray(v)) for (const m of v) if (typeof (m as Schema)?.$ref === "string") found.add(refName((m as Schema).$ref as string));
      allOfMembers(v, found);
    }
  }
  return found;
}

function ajvComponents(): Record<string, Schema> {
  const raw = loadSpec().components.schemas;
  const members = allOfMembers(raw);
  const schemas = Object.fromEntries(Object.entries(raw).map(([name, schema]) => [name, toAjvSchema(schema, false, members.has(name))])) as Record<
    string,
    Schema & { properties: Schema }
  >;
  for (const [name, extra] of Object.entries(EXTENSION_PROPERTIES)) {
    const schema = schemas[name]!;
    // An allOf composition gets its extra fields as one more part.
    if (schema.properties) Object.assign(schema.properties, extra);
    else (schema.allOf as Schema[]).push({ properties: extra });
  }
  return schemas;
}

/** `#/components/...` refs → absolute ones, for a schema registered under its own $id. */
function absoluteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(absoluteRefs);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, k === "$ref" && typeof v === "string" && v.startsWith("#/") ? `openapi.json${v}` : absoluteRefs(v)]),
  );
}

const orNull = (schema: unknown): Schema => ({ anyOf: [schema, { type: "null" }] });

/**
 * Streamed legacy completions. The spec has no schema for them: its
 * CreateCompletionResponse says stream chunks share the body's shape, yet
 * OpenAI (and vLLM, llama-server) send `finish_reason: null` on every chunk but
 * a choice's last, and `usage: null` before the usage chunk when
 * `stream_options.include_usage` is set (as on chat, where the spec says so).
 * This is CreateCompletionResponse with exactly those two fields made nullable.
 */
export const COMPLETION_STREAM_CHUNK = "CreateCompletionResponse (stream chunk)";

function derivedSchema(name: string): Schema | null {
  if (name !== COMPLETION_STREAM_CHUNK) return null;
  const base = structuredClone(toAjvSchema(componentSchema("CreateCompletionResponse"))) as Schema & {
    properties: { usage: Schema; choices: { items: { properties: { finish_reason: Schema } } } };
  };
  const choice = base.properties.choices.items.properties;
  choice.finish_reason = orNull(choice.finish_reason);
  base.properties.usage = orNull(base.properties.usage);
  return absoluteRefs(base) as Schema;
}

let ajv: Ajv2020 | null = null;
const validators = new Map<string, ValidateFunction>();

/**
 * An ajv validator for `#/components/schemas/<name>` (refs resolved against the
 * whole spec), or for COMPLETION_STREAM_CHUNK.
 */
export function specValidator(name: string): ValidateFunction {
  let v = validators.get(name);
  if (v) return v;
  if (!ajv) {
    // strict off: the spec carries x- keys, `example`, `deprecated`... and
    // formats such as "unixtime" that are documentation, not checks.
    ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    ajv.addSchema({ $id: "openapi.json", components: { schemas: ajvComponents() } });
  }
  const derived = derivedSchema(name);
  if (derived) v = ajv.compile(derived);
  else {
    componentSchema(name); // a clear error for a name the spec lacks
    v = ajv.getSchema(`openapi.json#/components/schemas/${name}`);
  }
  if (!v) throw new Error(`ajv could not compile ${name}`);
  validators.set(name, v);
  return v;
}

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""} ${JSON.stringify(e.params)}`).join("; ");
}

/** Throws, naming the failing paths, when `value` does not match the spec's schema `name`. */
export function assertMatchesSpec(name: string, value: unknown, what = name): void {
  const validate = specValidator(name);
  if (!validate(value)) {
    throw new Error(`${what} does not match the spec's ${name}: ${describeErrors(validate.errors)}\n${JSON.stringify(value).slice(0, 2000)}`);
  }
}

/** A Response as the openai SDK hands it over, less `output_text`: the SDK adds it, the server does not send it. */
export function wireResponse<T extends object>(sdkResponse: T): Omit<T, "output_text"> {
  const { output_text: _sdkOnly, ...wire } = sdkResponse as T & { output_text?: unknown };
  return wire;
}
