// Chat tool calling: `tools`, `tool_choice`, `parallel_tool_calls` → what the
// prompt lists, the grammar that forces a call, and how the output is parsed.
//
//   none (or no tools): the tools are not shown to the model; its text is content.
//   auto (the default with tools): the tools are listed in the system prompt
//     (models/toolPrompt.ts); <tool_call> blocks the model writes are parsed
//     into tool_calls when valid, left as content otherwise.
//   required / {type: "function", function: {name}}: a grammar lets the model
//     write only <tool_call> blocks calling a declared function (the named
//     one) with arguments valid against its parameters schema.
import { z } from "zod";
import type { GrammarSpec, ToolDefinition } from "../../../engine/index.js";
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { SchemaBudget, toGrammarSchema, type GrammarSchema } from "../structured/grammarSchema.js";
import { schemaGrammar } from "../structured/responseFormat.js";

export const MAX_TOOLS = 128;
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const functionName = () => z.string().regex(FUNCTION_NAME, "must be 1 to 64 letters, digits, '_' or '-'");

export const toolSchema = z
  .object({
    type: z.literal("function", { error: 'only "function" tools are supported' }),
    function: z
      .object({
        name: functionName(),
        description: z.string().optional(),
        parameters: z.record(z.string(), z.unknown()).optional(),
        strict: z.boolean().nullish(),
      })
      .strict(),
  })
  .strict();

export const toolChoiceSchema = z.union(
  [z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), function: z.object({ name: functionName() }).strict() }).strict()],
  { error: 'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}' },
);

export type Tool = z.infer<typeof toolSchema>;
export type ToolChoice = z.infer<typeof toolChoiceSchema>;

export interface ToolParsing {
  /** The grammar wrote the output (required / named): every block is a valid call. */
  trusted: boolean;
  functions: ReadonlySet<string>;
  parallel: boolean;
}

export interface ToolSetup {
  /** Listed in the prompt; absent: none. */
  promptTools?: ToolDefinition[];
  grammar?: GrammarSpec;
  /** How to read the output; null: plain content. */
  parsing: ToolParsing | null;
}

export interface ToolFields {
  tools?: Tool[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
}

/** Where a request keeps what its errors name: chat nests each function under `function`, the Responses API does not. */
export interface ToolPaths {
  name(i: number): string;
  parameters(i: number): string;
  choiceName: string;
}

export const CHAT_TOOL_PATHS: ToolPaths = {
  name: (i) => `tools[${i}].function.name`,
  parameters: (i) => `tools[${i}].function.parameters`,
  choiceName: "tool_choice.function.name",
};

/** Checks the tool fields together and says what the engine and the response writer do with them. */
export function toolSetup(req: ToolFields, paths: ToolPaths = CHAT_TOOL_PATHS): ToolSetup {
  const tools = req.tools ?? [];
  const choice = req.tool_choice ?? (tools.length > 0 ? "auto" : "none");
  const seen = new Set<string>();
  for (const [i, t] of tools.entries()) {
    if (seen.has(t.function.name)) {
      throw new ApiError("invalid_value", `Invalid '${paths.name(i)}': '${t.function.name}' is declared twice.`, paths.name(i));
    }
    seen.add(t.function.name);
  }
  if (choice === "none") return { parsing: null };
  if (tools.length === 0) {
    if (choice === "auto") return { parsing: null };
    throw new ApiError("invalid_value", "Invalid 'tool_choice': it requires a call but 'tools' declares no function.", "tool_choice");
  }
  const promptTools: ToolDefinition[] = tools.map((t) => ({
    name: t.function.name,
    ...(t.function.description ? { description: t.function.description } : {}),
    parameters: t.function.parameters ?? { type: "object", properties: {} },
  }));
  const parallel = req.parallel_tool_calls !== false;
  if (choice === "auto") return { promptTools, parsing: { trusted: false, functions: seen, parallel } };
  let callable = tools.map((t, i) => ({ t, i }));
  if (typeof choice === "object") {
    callable = callable.filter(({ t }) => t.function.name === choice.function.name);
    if (callable.length === 0) {
      throw new ApiError("invalid_value", `Invalid '${paths.choiceName}': no tool named '${choice.function.name}' is declared in 'tools'.`, paths.choiceName);
    }
  }
  // One budget for all the callable tools: the grammar holds them all at once.
  const budget = new SchemaBudget();
  const calls: GrammarSchema[] = callable.map(({ t, i }) => ({
    type: "object",
    properties: { name: { const: t.function.name }, arguments: argumentsGrammar(t.function.parameters, paths.parameters(i), budget) },
    additionalProperties: false,
  }));
  const schema = calls.length === 1 ? calls[0]! : { oneOf: calls };
  return {
    promptTools,
    grammar: schemaGrammar(schema, { prefix: `${TOOL_CALL_OPEN}\n`, suffix: `\n${TOOL_CALL_CLOSE}`, separator: "\n", repeat: parallel }),
    parsing: { trusted: true, functions: new Set(callable.map(({ t }) => t.function.name)), parallel },
  };
}

/** A function's parameters schema → the grammar of its arguments object (OpenAI: absent means no parameters). */
function argumentsGrammar(parameters: Record<string, unknown> | undefined, param: string, budget: SchemaBudget): GrammarSchema {
  const schema = parameters ?? { type: "object", properties: {}, additionalProperties: false };
  if (schema.type !== undefined && schema.type !== "object") {
    throw new ApiError("invalid_value", `Invalid '${param}': a function's parameters must describe an object (type "object").`, param);
  }
  return toGrammarSchema({ ...schema, type: "object" }, { param, budget });
}

/**
 * The output grammar of a request that may have tools and a JSON format too
 * (chat's response_format, the Responses API's text.format). A forced call
 * (tool_choice "required" or a named function) is written by the tools'
 * grammar: the format is for the message a later turn writes (what the Agents
 * SDK sends with an output type until its tool has run). Otherwise a JSON
 * format's grammar writes the output, and with tool_choice "auto" that output
 * is the message: a model held to a JSON document cannot also be free to write
 * a call, so the output is not read for calls.
 */
export function withOutputFormat(tools: ToolSetup, formatGrammar: GrammarSpec | undefined): { tools: ToolSetup; grammar: GrammarSpec | undefined } {
  if (tools.grammar) return { tools, grammar: tools.grammar };
  if (!formatGrammar) return { tools, grammar: undefined };
  return { tools: { ...tools, parsing: null }, grammar: formatGrammar };
}
