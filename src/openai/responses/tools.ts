// Function tools on /v1/responses. The Responses API declares a function flat
// ({type, name, description, parameters, strict}) where chat nests it under
// `function`; past that, tools work exactly as on chat (src/openai/tools):
// listed in the prompt, forced by grammar for `required` or a named function,
// parsed from the model's <tool_call> blocks. Calls come back as
// `function_call` output items; results go in as `function_call_output` items.
import { z } from "zod";
import { functionName, MAX_TOOLS, type ToolFields, type ToolPaths } from "../tools/tools.js";

export const responseToolSchema = z
  .object({
    type: z.literal("function", { error: 'only "function" tools are supported (no built-in tools)' }),
    name: functionName(),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  })
  .strict();

export const responseToolChoiceSchema = z.union(
  [z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: functionName() }).strict()],
  { error: 'must be "none", "auto", "required" or {"type": "function", "name": ...}' },
);

export const responseToolsShape = {
  tools: z.array(responseToolSchema).max(MAX_TOOLS, `must contain at most ${MAX_TOOLS} tools`).nullish(),
  tool_choice: responseToolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
};

type ResponseTool = z.infer<typeof responseToolSchema>;
type ResponseToolChoice = z.infer<typeof responseToolChoiceSchema>;

export const RESPONSES_TOOL_PATHS: ToolPaths = {
  name: (i) => `tools[${i}].name`,
  parameters: (i) => `tools[${i}].parameters`,
  choiceName: "tool_choice.name",
};

/** The Responses fields in chat's shape, for toolSetup. */
export function asChatToolFields(body: {
  tools?: ResponseTool[] | null;
  tool_choice?: ResponseToolChoice | null;
  parallel_tool_calls?: boolean | null;
}): ToolFields {
  const choice = body.tool_choice;
  return {
    tools: (body.tools ?? []).map((t) => ({
      type: "function" as const,
      function: {
        name: t.name,
        ...(t.description ? { description: t.description } : {}),
        ...(t.parameters ? { parameters: t.parameters } : {}),
      },
    })),
    tool_choice: typeof choice === "object" && choice !== null ? { type: "function", function: { name: choice.name } } : choice,
    parallel_tool_calls: body.parallel_tool_calls,
  };
}

/** The tools as a Response object echoes them (FunctionTool: every field present). */
export function echoTools(tools: readonly ResponseTool[] | null | undefined) {
  return (tools ?? []).map((t) => ({
    type: "function" as const,
    name: t.name,
    description: t.description ?? null,
    parameters: t.parameters ?? null,
    strict: t.strict ?? null,
  }));
}

export type EchoedTool = ReturnType<typeof echoTools>[number];

/** tool_choice as echoed: the default is "auto", as OpenAI reports it with or without tools. */
export function echoToolChoice(choice: ResponseToolChoice | null | undefined): ResponseToolChoice {
  return choice ?? "auto";
}
