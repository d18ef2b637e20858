// POST /v1/chat/completions: request schema and its translation to an engine request.
import { z } from "zod";
import type { ChatMessage, EngineRequest, GrammarSpec } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import {
  isNullish,
  MAX_IDENTIFIER_LENGTH,
  parseBody,
  refuseUnsupported,
  samplingShape,
  stopList,
  tolerantObject,
  toSamplingParams,
  zodToApiError,
} from "../common.js";
import { CHAT_COMPLETION_PARAMETERS } from "../parameters.js";
import { responseFormatGrammar, responseFormatSchema } from "../structured/responseFormat.js";
import { MAX_TOOLS, toolChoiceSchema, toolSchema, toolSetup, withOutputFormat, type ToolSetup } from "../tools/tools.js";

export const MAX_MESSAGES = 2048;
export const MAX_CONTENT_PARTS = 1024;
export const MAX_TOOL_CALLS = 128;

// Messages, content parts and tool calls follow the tolerant rule of
// common.ts: unknown keys inside them are ignored (a message the server
// returned, sent back unchanged, carries `annotations`, `parsed`, `index`...).
const textPart = tolerantObject({ type: z.literal("text"), text: z.string() });
// Parts are dispatched on `type` in messageText, which checks each kind's own fields.
const anyPart = z.object({ type: z.string() }).passthrough();
const content = z.union([z.string(), z.array(anyPart).max(MAX_CONTENT_PARTS)]);

const toolCall = tolerantObject({
  id: z.string().max(MAX_IDENTIFIER_LENGTH),
  type: z.literal("function", { error: 'only "function" tool calls are supported' }),
  function: tolerantObject({ name: z.string().max(MAX_IDENTIFIER_LENGTH), arguments: z.string() }),
});

const message = tolerantObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"], {
    error: "must be one of system, developer, user, assistant, tool",
  }),
  content: content.nullish(),
  name: z.string().max(MAX_IDENTIFIER_LENGTH).optional(),
  refusal: z.string().nullish(),
  tool_calls: z.array(toolCall).max(MAX_TOOL_CALLS).nullish(),
  tool_call_id: z.string().max(MAX_IDENTIFIER_LENGTH).optional(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
});

export const chatRequestSchema = z
  .object({
    model: z.string({ error: "must be a string" }),
    messages: z.array(message).min(1, "must contain at least one message").max(MAX_MESSAGES, `must contain at most ${MAX_MESSAGES} messages`),
    max_completion_tokens: z.number().int("must be an integer").min(1).nullish(),
    n: z.number().int().min(1).max(128).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    response_format: responseFormatSchema.nullish(),
    modalities: z.array(z.string()).nullish(),
    tools: z.array(toolSchema).max(MAX_TOOLS, `must declare at most ${MAX_TOOLS} tools`).nullish(),
    tool_choice: toolChoiceSchema.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
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

export function parseChatRequest(body: unknown): ChatRequest {
  const req = parseBody(chatRequestSchema, body);
  refuseUnsupported(req as Record<string, unknown>, CHAT_COMPLETION_PARAMETERS);
  if (!isNullish(req.top_logprobs) && req.logprobs !== true) {
    // OpenAI's rule: the alternatives come with the chosen tokens' logprobs or not at all.
    throw new ApiError("invalid_value", "Invalid 'top_logprobs': it requires 'logprobs' to be true.", "top_logprobs");
  }
  if (req.ignore_eos && req.response_format && req.response_format.type !== "text") {
    // A finished grammar allows nothing but end-of-generation.
    throw new ApiError("unsupported_parameter", "Unsupported parameter: 'ignore_eos' cannot be combined with a JSON 'response_format'.", "ignore_eos");
  }
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
  // Ids of the calls made so far: a tool message answers one of them.
  const callIds = new Set<string>();
  return req.messages.map((m, i) => {
    if (m.role === "function") {
      throw new ApiError(
        "unsupported_parameter",
        `Unsupported message role 'function' in 'messages[${i}].role': use 'tool' messages (functions are deprecated).`,
        `messages[${i}].role`,
      );
    }
    for (const field of ["function_call", "audio"] as const) {
      if (!isNullish(m[field])) {
        const param = `messages[${i}].${field}`;
        throw new ApiError("unsupported_parameter", `Unsupported parameter: '${param}' is not supported.`, param);
      }
    }
    if ((m.tool_calls?.length ?? 0) > 0 && m.role !== "assistant") {
      throw new ApiError("invalid_value", `Invalid 'messages[${i}].tool_calls': only assistant messages carry tool calls.`, `messages[${i}].tool_calls`);
    }
    if (m.role !== "tool" && m.tool_call_id !== undefined) {
      throw new ApiError("invalid_value", `Invalid 'messages[${i}].tool_call_id': only tool messages answer a tool call.`, `messages[${i}].tool_call_id`);
    }
    if (m.role === "tool") {
      const param = `messages[${i}].tool_call_id`;
      if (m.tool_call_id === undefined) throw new ApiError("missing_required_parameter", `Missing required parameter: '${param}'.`, param);
      if (!callIds.has(m.tool_call_id)) {
        throw new ApiError("invalid_value", `Invalid '${param}': '${m.tool_call_id}' answers no tool call of an earlier assistant message.`, param);
      }
      return { role: "tool", content: messageText(m, i) };
    }
    const calls = m.tool_calls ?? [];
    for (const c of calls) callIds.add(c.id);
    const text = messageText(m, i);
    if (calls.length === 0) return { role: m.role, content: text };
    return { role: m.role, content: text, toolCalls: calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })) };
  });
}

/**
 * The tools and the output grammar of a chat request: a forced tool call, or
 * the JSON `response_format`, or neither (withOutputFormat says which wins).
 */
export function chatOutput(req: ChatRequest): { tools: ToolSetup; grammar: GrammarSpec | undefined } {
  return withOutputFormat(toolSetup(req), responseFormatGrammar(req.response_format));
}

/**
 * `maxPriority`: the tenant's cap on `priority` (requests asking more get the
 * cap). `output`: chatOutput(req), when the caller also needs its tools to read the output.
 */
export function toEngineRequest(req: ChatRequest, tenant: string, maxPriority = 0, output = chatOutput(req)): EngineRequest {
  const { tools, grammar } = output;
  const messages = toChatMessages(req);
  return {
    tenant,
    prompt: { kind: "chat", messages, ...(tools.promptTools ? { tools: tools.promptTools } : {}) },
    maxTokens: req.max_completion_tokens ?? req.max_tokens ?? null,
    ...(isNullish(req.max_completion_tokens) ? {} : { maxTokensParam: "max_completion_tokens" }),
    stop: stopList(req.stop),
    sampling: toSamplingParams(req),
    echo: false,
    priority: Math.min(req.priority ?? 0, maxPriority),
    ...(grammar ? { grammar } : {}),
    ...(req.logprobs ? { logprobs: req.top_logprobs ?? 0 } : {}),
  };
}
