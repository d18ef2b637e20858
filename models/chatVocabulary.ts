// What a chat is made of, as templates render it and the engine protocol
// carries it: messages, tool calls and tool definitions. Its own home, so that
// models/ (which renders it) need not import the engine (which imports models/).

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
  /** assistant: the tool calls it made, rendered after its content. */
  toolCalls?: ToolCall[];
}

export interface ToolCall {
  name: string;
  /** JSON text of the arguments object, as the model wrote it. */
  arguments: string;
}

/**
 * Hermes-style tool calls (models/toolPrompt.ts): the prompt asks for them in
 * these tags, the forced-call grammar writes them, the front parses them.
 */
export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

/** A function the model may call, listed in the chat prompt. */
export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON Schema of the arguments object, as the client gave it. */
  parameters: Record<string, unknown>;
}
