// The Response object (components.schemas.Response in OpenAI's spec) as llamux
// sends, stores and returns it. `output_text` is left out: the spec marks it
// an SDK-only convenience, and the openai SDKs compute it from `output`.
import type { FinishReason, Usage } from "../../../engine/index.js";
import type { FunctionCallItem, Item, MessageItem } from "../../store/conversationStore.js";
import type { EchoedText } from "./textFormat.js";
import type { EchoedTool, echoToolChoice } from "./tools.js";

/** queued and cancelled: background responses only. */
export type ResponseStatus = "queued" | "in_progress" | "completed" | "incomplete" | "failed" | "cancelled";

/** What the request fixed for the life of the response. */
export interface ResponseEcho {
  id: string;
  createdAtSeconds: number;
  model: string;
  instructions: string | null;
  maxOutputTokens: number | null;
  previousResponseId: string | null;
  conversationId: string | null;
  store: boolean;
  temperature: number;
  topP: number;
  parallelToolCalls: boolean;
  tools: EchoedTool[];
  toolChoice: ReturnType<typeof echoToolChoice>;
  topLogprobs: number;
  text: EchoedText;
  metadata: Record<string, string>;
  user: string | null;
  safetyIdentifier: string | null;
  promptCacheKey: string | null;
  /** Absent: "disabled". */
  truncation?: "auto" | "disabled";
  /** Created with background: true (absent: false). */
  background?: boolean;
}

export interface ResponseState {
  status: ResponseStatus;
  output: Item[];
  usage: Usage | null;
  error: { code: "server_error"; message: string } | null;
  completedAtSeconds: number | null;
}

export type ResponseObject = ReturnType<typeof responseJson>;

export function responseJson(echo: ResponseEcho, state: ResponseState) {
  return {
    id: echo.id,
    object: "response" as const,
    created_at: echo.createdAtSeconds,
    status: state.status,
    background: echo.background ?? false,
    completed_at: state.completedAtSeconds,
    conversation: echo.conversationId === null ? null : { id: echo.conversationId },
    error: state.error,
    // "length" is the only way llamux leaves a response incomplete.
    incomplete_details: state.status === "incomplete" ? { reason: "max_output_tokens" as const } : null,
    instructions: echo.instructions,
    max_output_tokens: echo.maxOutputTokens,
    max_tool_calls: null,
    metadata: echo.metadata,
    model: echo.model,
    output: state.output,
    parallel_tool_calls: echo.parallelToolCalls,
    previous_response_id: echo.previousResponseId,
    prompt_cache_key: echo.promptCacheKey,
    reasoning: { effort: null, summary: null },
    safety_identifier: echo.safetyIdentifier,
    service_tier: "default" as const,
    store: echo.store,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.toolChoice,
    tools: echo.tools,
    top_logprobs: echo.topLogprobs,
    top_p: echo.topP,
    truncation: echo.truncation ?? "disabled",
    // Absent until the response is finished (the spec's `usage` is never null).
    ...(state.usage === null ? {} : { usage: responseUsageJson(state.usage) }),
    // The spec types `user` as a string (never null): absent when not given.
    ...(echo.user === null ? {} : { user: echo.user }),
  };
}

/**
 * The Responses API's usage object. cache_write_tokens: the prompt tokens the
 * engine evaluated, which stay in the tenant's KV slot for the next request.
 */
export function responseUsageJson(u: Usage) {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens, cache_write_tokens: u.promptTokens - u.cachedTokens },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

/** The assistant message a finished (or cut) generation produced; `logprobs` as LogProb entries (include message.output_text.logprobs). */
export function outputMessage(id: string, text: string, status: MessageItem["status"], logprobs: unknown[] = []): MessageItem {
  return { type: "message", id, role: "assistant", status, content: [{ type: "output_text", text, annotations: [], logprobs }] };
}

/** A function call the model made, once its arguments are complete. */
export function functionCall(id: string, callId: string, name: string, args: string, status: FunctionCallItem["status"] = "completed"): FunctionCallItem {
  return { type: "function_call", id, call_id: callId, name, arguments: args, status };
}

export function finishedStatus(finish: FinishReason): "completed" | "incomplete" {
  return finish === "length" ? "incomplete" : "completed";
}
