// POST /v1/chat/completions: request schema and its translation to an engine request.
import { z } from "zod";
import type { ChatMessage, EngineRequest } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import {
  isNullish,
  MAX_IDENTIFIER_LENGTH,
  parseBody,
  refuseUnsupported,
  samplingShape,
  stopList,
  toSamplingParams,
  zodToApiError,
  type RefusedParam,
} from "../common.js";

export const MAX_MESSAGES = 2048;
export const MAX_CONTENT_PARTS = 1024;

const textPart = z.object({ type: z.literal("text"), text: z.string() }).strict();
const anyPart = z.object({ type: z.string() }).passthrough();
const content = z.union([z.string(), z.array(anyPart).max(MAX_CONTENT_PARTS)]);

const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant", "tool", "function"], {
      error: "must be one of system, developer, user, assistant",
    }),
    content: content.nullish(),
    name: z.string().max(MAX_IDENTIFIER_LENGTH).optional(),
    refusal: z.string().nullish(),
    tool_calls: z.unknown().optional(),
    tool_call_id: z.unknown().optional(),
    function_call: z.unknown().optional(),
    audio: z.unknown().optional(),
  })
  .strict();

export const chatRequestSchema = z
  .object({
    model: z.string({ error: "must be a string" }),
    messages: z
      .array(message)
      .min(1, "must contain at least one message")
      .max(MAX_MESSAGES, `must contain at most ${MAX_MESSAGES} messages`),
    max_completion_tokens: z.number().int("must be an integer").min(1).nullish(),
    n: z.number().int().min(1).max(128).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    response_format: z.object({ type: z.string() }).passthrough().nullish(),
    modalities: z.array(z.string()).nullish(),
    tools: z.unknown().optional(),
    tool_choice: z.unknown().optional(),
    parallel_tool_calls: z.unknown().optional(),
    functions: z.unknown().optional(),
    function_call: z.unknown().optional(),
    audio: z.unknown().optional(),
    prediction: z.unknown().optional(),
    web_search_options: z.unknown().optional(),
    reasoning_effort: z.unknown().optional(),
    verbosity: z.unknown().optional(),
    moderation: z.unknown().optional(),
    // llamux extension: order among the tenant's own waiting requests (higher first).
    priority: z.number().int("must be an integer").min(-1000).max(1000).nullish(),
    ...samplingShape,
  })
  .strict();

export type ChatRequest = z.infer<typeof chatRequestSchema>;

const REFUSED: RefusedParam[] = [
  { name: "n", neutral: (v) => isNullish(v) || v === 1, why: "is only supported with the value 1" },
  { name: "logprobs", neutral: (v) => isNullish(v) || v === false, why: "is not supported yet" },
  { name: "top_logprobs", neutral: isNullish, why: "is not supported yet" },
  {
    name: "response_format",
    neutral: (v) => isNullish(v) || (v as { type?: string }).type === "text",
    why: "only supports {\"type\": \"text\"} so far",
  },
  {
    name: "modalities",
    neutral: (v) => isNullish(v) || (Array.isArray(v) && v.every((m) => m === "text")),
    why: "only supports [\"text\"]",
  },
  { name: "tools", neutral: (v) => isNullish(v) || (Array.isArray(v) && v.length === 0), why: "(tool calling) is not supported yet" },
  { name: "tool_choice", neutral: (v) => isNullish(v) || v === "none", why: "(tool calling) is not supported yet" },
  { name: "parallel_tool_calls", neutral: isNullish, why: "(tool calling) is not supported yet" },
  { name: "functions", neutral: isNullish, why: "(function calling) is not supported" },
  { name: "function_call", neutral: isNullish, why: "(function calling) is not supported" },
  { name: "audio", neutral: isNullish, why: "is not supported: this server produces text only" },
  { name: "prediction", neutral: isNullish, why: "(predicted outputs) is not supported" },
  { name: "web_search_options", neutral: isNullish, why: "is not supported: this server has no web search" },
  { name: "reasoning_effort", neutral: isNullish, why: "is not supported with this model" },
  { name: "verbosity", neutral: isNullish, why: "is not supported with this model" },
  { name: "moderation", neutral: isNullish, why: "is not supported" },
];

export function parseChatRequest(body: unknown): ChatRequest {
  const req = parseBody(chatRequestSchema, body);
  refuseUnsupported(req as Record<string, unknown>, REFUSED);
  return req;
}

function messageText(m: ChatRequest["messages"][number], i: number): string {
  if (m.content == null) {
    if (m.role === "assistant") return m.refusal ?? "";
    throw new ApiError("missing_required_parameter", `Missing required parameter: 'messages[${i}].content'.`, `messages[${i}].content`);
  }
  if (typeof m.content === "string") return m.content;
  return m.content
    .map((part, j) => {
      const parsed = textPart.safeParse(part);
      if (parsed.success) return parsed.data.text;
      if (m.role === "assistant" && part.type === "refusal" && typeof part.refusal === "string") return part.refusal;
      // A text part with a bad field is not an unsupported part: name the field.
      if (part.type === "text") throw zodToApiError(parsed.error, part, ["messages", i, "content", j]);
      const param = `messages[${i}].content[${j}].type`;
      throw new ApiError("unsupported_parameter", `Unsupported content part type '${String(part.type)}' in '${param}': this model accepts text only.`, param);
    })
    .join("");
}

export function toChatMessages(req: ChatRequest): ChatMessage[] {
  return req.messages.map((m, i) => {
    if (m.role === "tool" || m.role === "function") {
      throw new ApiError("unsupported_parameter", `Unsupported message role '${m.role}' in 'messages[${i}].role': tool calling is not supported yet.`, `messages[${i}].role`);
    }
    for (const field of ["tool_calls", "function_call", "audio"] as const) {
      if (!isNullish(m[field])) {
        const param = `messages[${i}].${field}`;
        throw new ApiError("unsupported_parameter", `Unsupported parameter: '${param}' is not supported yet.`, param);
      }
    }
    return { role: m.role, content: messageText(m, i) };
  });
}

/** `maxPriority`: the tenant's cap on `priority` (requests asking more get the cap). */
export function toEngineRequest(req: ChatRequest, tenant: string, maxPriority = 0): EngineRequest {
  return {
    tenant,
    prompt: { kind: "chat", messages: toChatMessages(req) },
    maxTokens: req.max_completion_tokens ?? req.max_tokens ?? null,
    stop: stopList(req.stop),
    sampling: toSamplingParams(req),
    echo: false,
    priority: Math.min(req.priority ?? 0, maxPriority),
  };
}
