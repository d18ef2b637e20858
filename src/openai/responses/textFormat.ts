// `text` on /v1/responses: the output's format (text, json_object, or
// json_schema, flat where chat nests it under `json_schema`) and verbosity.
// JSON formats are enforced by the engine's output grammar, exactly as chat's
// response_format is (src/openai/structured): whatever the model writes parses
// and, with a schema, validates against it.
import { z } from "zod";
import type { GrammarSpec } from "../../../engine/index.js";
import { toGrammarSchema } from "../structured/grammarSchema.js";
import { schemaGrammar } from "../structured/responseFormat.js";

export const TEXT_SCHEMA_PARAM = "text.format.schema";

export const textFormatSchema = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }).strict(),
    z.object({ type: z.literal("json_object") }).strict(),
    z
      .object({
        type: z.literal("json_schema"),
        name: z.string({ error: "must be a string" }).regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1 to 64 letters, digits, '_' or '-'"),
        description: z.string({ error: "must be a string" }).nullish(),
        schema: z.record(z.string(), z.unknown(), { error: "must be a JSON Schema object" }),
        // Enforcement is always strict here: the grammar admits nothing else.
        strict: z.boolean({ error: "must be a boolean" }).nullish(),
      })
      .strict(),
  ],
  { error: 'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "name": ..., "schema": {...}}' },
);

export const textSchema = z
  .object({
    format: textFormatSchema.nullish(),
    // Accepted and echoed: it asks a model to be more or less wordy, which a
    // model without that training cannot be told (as `user` or `service_tier`).
    verbosity: z.enum(["low", "medium", "high"], { error: 'must be "low", "medium" or "high"' }).nullish(),
  })
  .strict();

export type TextParam = z.infer<typeof textSchema>;
export type TextFormat = z.infer<typeof textFormatSchema>;

/** The engine grammar for `text.format`; undefined for free text. Throws a 400 naming what the grammar cannot enforce. */
export function textFormatGrammar(format: TextFormat | null | undefined): GrammarSpec | undefined {
  if (!format || format.type === "text") return undefined;
  if (format.type === "json_object") return { kind: "json" };
  // schemaGrammar, as chat's response_format: bounds node-llama-cpp cannot carry go to the front's GBNF.
  return schemaGrammar(toGrammarSchema(format.schema, { param: TEXT_SCHEMA_PARAM }));
}

/** `text` as the Response object echoes it (ResponseTextConfig): every field present, as OpenAI returns it. */
export function echoText(text: TextParam | null | undefined) {
  const format = text?.format;
  const verbosity = text?.verbosity ?? "medium";
  if (format?.type !== "json_schema") return { format: { type: format?.type ?? "text" }, verbosity };
  return {
    format: { type: "json_schema", name: format.name, description: format.description ?? null, schema: format.schema, strict: format.strict ?? false },
    verbosity,
  };
}

export type EchoedText = ReturnType<typeof echoText>;
