// What a client's schemas may cost the engine, and the recursion the grammar
// can carry. The grammar is compiled and evaluated at every token in the
// engine all tenants share: a 100,000-value enum once held it for over a
// minute, so a request's schemas are bounded before anything is built.
import type { GrammarSchema } from "./grammarSchema.js";

/**
 * What one request's schemas may cost, all together (a request's tools share
 * one budget). OpenAI documents 5000 properties, 10 levels of nesting, 1000
 * enum values and 120,000 characters of names and values; the repetition
 * budget bounds what minLength/maxLength/minItems/maxItems/maxProperties
 * expand to in the grammar (each counted unit is one grammar rule).
 */
export const SCHEMA_LIMITS = {
  properties: 5000,
  depth: 10,
  enumValues: 1000,
  anyOfBranches: 1000,
  stringChars: 120_000,
  /** The sum of every length and count bound (minLength, maxLength, minItems, maxItems, maxProperties). */
  repetitions: 100_000,
} as const;

/** What the schemas of one request have spent so far; shared between translations. */
export class SchemaBudget {
  properties = 0;
  enumValues = 0;
  anyOfBranches = 0;
  stringChars = 0;
  repetitions = 0;
}

/**
 * `$ref` recursion the grammar can carry: a definition may refer to itself
 * only after something is written (a brace, a bracket), or the grammar loops
 * without writing anything (llama.cpp refuses left recursion); and each
 * definition must have a finite value, or a model that enters it writes until
 * max_tokens and never completes the JSON.
 */
export function checkRecursion(root: GrammarSchema, defs: Record<string, GrammarSchema>, fail: (at: string, why: string) => never): void {
  const nameOf = (ref: string) => ref.slice("#/$defs/".length);
  const heads = (s: GrammarSchema): string[] => {
    if (typeof s.$ref === "string") return [nameOf(s.$ref)];
    if (Array.isArray(s.oneOf)) return s.oneOf.flatMap((alt) => heads(alt as GrammarSchema));
    return [];
  };
  for (const start of Object.keys(defs)) {
    const seen = new Set<string>();
    const stack = heads(defs[start]!);
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (name === start) fail(`#/$defs/${start}`, "'$ref' refers back to its own definition before anything is written (a loop that writes nothing)");
      if (seen.has(name)) continue;
      seen.add(name);
      stack.push(...heads(defs[name]!));
    }
  }
  const finite = new Set<string>();
  const hasFiniteValue = (s: GrammarSchema): boolean => {
    if (typeof s.$ref === "string") return finite.has(nameOf(s.$ref));
    if (Array.isArray(s.oneOf)) return s.oneOf.some((alt) => hasFiniteValue(alt as GrammarSchema));
    if (s.type === "object" && s.properties !== undefined) return Object.values(s.properties as Record<string, GrammarSchema>).every(hasFiniteValue);
    if (s.type === "array") {
      const prefix = (s.prefixItems as GrammarSchema[] | undefined) ?? [];
      const needsItems = ((s.minItems as number | undefined) ?? 0) > prefix.length;
      return prefix.every(hasFiniteValue) && (!needsItems || s.items === undefined || hasFiniteValue(s.items as GrammarSchema));
    }
    return true;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (const [name, def] of Object.entries(defs)) {
      if (!finite.has(name) && hasFiniteValue(def)) {
        finite.add(name);
        changed = true;
      }
    }
  }
  const endless = Object.keys(defs).find((name) => !finite.has(name));
  if (endless !== undefined) fail(`#/$defs/${endless}`, "its '$ref's recurse without end: no finite JSON value matches it");
  if (!hasFiniteValue(root)) fail("#", "its '$ref's recurse without end: no finite JSON value matches it");
}
