// Chat `response_format`: text, json_object, or json_schema, enforced by an
// output grammar in the engine (never by asking the model nicely).
import { z } from "zod";
import type { GrammarSpec, GrammarWrap } from "../../../engine/index.js";
import { needsGbnf, toGbnf } from "./gbnf.js";
import { toGrammarSchema, type GrammarSchema } from "./grammarSchema.js";

export const SCHEMA_PARAM = "response_format.json_schema.schema";

export const responseFormatSchema = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }).strict(),
    z.object({ type: z.literal("json_object") }).strict(),
    z
      .object({
        type: z.literal("json_schema"),
        json_schema: z
          .object({
            name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1 to 64 letters, digits, '_' or '-'"),
            description: z.string().optional(),
            schema: z.record(z.string(), z.unknown()).optional(),
            // Enforcement is always strict here: the grammar admits nothing else.
            strict: z.boolean().nullish(),
          })
          .strict(),
      })
      .strict(),
  ],
  { error: 'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}' },
);

export type ResponseFormat = z.infer<typeof responseFormatSchema>;

/** The engine grammar for a response format; undefined for free text. Throws a 400 naming what the grammar cannot enforce. */
export function responseFormatGrammar(format: ResponseFormat | null | undefined): GrammarSpec | undefined {
  if (!format || format.type === "text") return undefined;
  if (format.type === "json_object") return { kind: "json" };
  // No schema: any JSON value, as JSON Schema reads `{}`.
  return schemaGrammar(toGrammarSchema(format.json_schema.schema ?? {}, { param: SCHEMA_PARAM }));
}

/** The engine grammar for a translated schema: node-llama-cpp's where it can carry it, the front's GBNF where not. */
export function schemaGrammar(schema: GrammarSchema, wrap?: GrammarWrap): GrammarSpec {
  if (needsGbnf(schema)) return { kind: "gbnf", grammar: toGbnf(schema, wrap) };
  return { kind: "json_schema", schema, ...(wrap ? { wrap } : {}) };
}
