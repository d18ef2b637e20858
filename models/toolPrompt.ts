// Tool calling in the prompt, Hermes-style (the convention of NousResearch's
// Hermes and Qwen 2.5 templates, which ChatML models tuned for tools follow):
// the tools are listed as JSON in the system prompt inside <tools></tools>; an
// assistant's calls are <tool_call>{"name", "arguments"}</tool_call> blocks after
// its text; tool results go back as a user turn of <tool_response> blocks.
//
// The turns produced are plain text for whatever chat template renders them
// (ChatML by default). Pure: no node-llama-cpp.
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN, type ChatMessage, type ToolCall, type ToolDefinition } from "./chatVocabulary.js";

export interface PlainTurn {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

export function toolsSystemText(tools: readonly ToolDefinition[]): string {
  const lines = tools.map((t) =>
    JSON.stringify({ type: "function", function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters } }),
  );
  return [
    "# Tools",
    "",
    "You may call one or more functions to assist with the user query.",
    "",
    "You are provided with function signatures within <tools></tools> XML tags:",
    "<tools>",
    ...lines,
    "</tools>",
    "",
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:",
    TOOL_CALL_OPEN,
    '{"name": <function-name>, "arguments": <args-json-object>}',
    TOOL_CALL_CLOSE,
  ].join("\n");
}

/** One call as the model is expected to write it (and as the forced-call grammar makes it write it). */
export function toolCallBlock(call: ToolCall): string {
  // The arguments are the model's own JSON text; re-serialise only when it is not JSON.
  let args = call.arguments;
  try {
    JSON.parse(args);
  } catch {
    args = JSON.stringify(args);
  }
  return `${TOOL_CALL_OPEN}\n{"name": ${JSON.stringify(call.name)}, "arguments": ${args}}\n${TOOL_CALL_CLOSE}`;
}

/**
 * Messages with tool calls and tool results, plus the tool list → plain
 * system/user/assistant turns. The tool list joins the first system (or
 * developer) message, or opens the conversation as one; consecutive tool
 * results share one user turn, in order.
 */
export function withToolTurns(messages: readonly ChatMessage[], tools: readonly ToolDefinition[] | undefined): PlainTurn[] {
  const turns: PlainTurn[] = [];
  for (const m of messages) {
    if (m.role === "tool") {
      const block = `<tool_response>\n${m.content}\n</tool_response>`;
      const last = turns.at(-1);
      if (last?.role === "user" && last.content.startsWith("<tool_response>") && last.content.endsWith("</tool_response>")) last.content += `\n${block}`;
      else turns.push({ role: "user", content: block });
      continue;
    }
    if (m.role === "assistant" && m.toolCalls && m.toolCalls.length > 0) {
      const blocks = m.toolCalls.map(toolCallBlock).join("\n");
      turns.push({ role: "assistant", content: m.content ? `${m.content}\n${blocks}` : blocks });
      continue;
    }
    turns.push({ role: m.role, content: m.content });
  }
  if (tools && tools.length > 0) {
    const text = toolsSystemText(tools);
    const first = turns[0];
    if (first && (first.role === "system" || first.role === "developer")) first.content = first.content ? `${first.content}\n\n${text}` : text;
    else turns.unshift({ role: "system", content: text });
  }
  return turns;
}
