// Chat completion responses: one JSON body, or OpenAI's chunk sequence over SSE
// (role chunk, content chunks, finish chunk, optional usage chunk, [DONE]).
// With tools, the model's text goes through the tool-call parser: its calls
// become message.tool_calls (streamed as OpenAI's tool-call deltas) and the
// finish reason `tool_calls`.
import type { Response } from "express";
import type { FinishReason, Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import { collect, usageJson, type Admitted } from "../generation.js";
import { nowSeconds, randomId } from "../common.js";
import { parseToolCalls, ToolCallParser, type ToolCallEvent } from "../tools/toolCallParser.js";
import type { ToolParsing } from "../tools/tools.js";

export interface ChatResponseMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  onUsage: (u: Usage) => void;
}

const newCallId = () => randomId("call", "_");

/** A generation that ended normally after calling tools ends with `tool_calls`, as OpenAI's. */
const chatFinish = (finish: FinishReason, calls: number): FinishReason | "tool_calls" => (finish === "stop" && calls > 0 ? "tool_calls" : finish);

export async function respondChat(res: Response, choice: Admitted, meta: ChatResponseMeta, tools: ToolParsing | null = null): Promise<void> {
  const out = await collect(choice);
  meta.onUsage(out.usage);
  const parsed = tools ? parseToolCalls(out.text, { ...tools, newId: newCallId }) : { content: out.text, calls: [] };
  const toolCalls = parsed.calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
  res.json({
    id: randomId("chatcmpl"),
    object: "chat.completion",
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    service_tier: "default",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: parsed.content, refusal: null, annotations: [], ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
        logprobs: null,
        finish_reason: chatFinish(out.finishReason, toolCalls.length),
      },
    ],
    usage: usageJson(out.usage),
  });
}

/** One parser event → the delta OpenAI streams for it. */
function eventDelta(e: ToolCallEvent): object {
  if (e.type === "content") return { content: e.text };
  if (e.type === "call") return { tool_calls: [{ index: e.index, id: e.id, type: "function", function: { name: e.name, arguments: "" } }] };
  return { tool_calls: [{ index: e.index, function: { arguments: e.text } }] };
}

export async function streamChat(res: Response, choice: Admitted, meta: ChatResponseMeta, tools: ToolParsing | null = null): Promise<void> {
  const sse = new SseWriter(res);
  const base = {
    id: randomId("chatcmpl"),
    object: "chat.completion.chunk" as const,
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    service_tier: "default",
  };
  const usageField = meta.includeUsage ? { usage: null } : {};
  const chunk = (delta: object, finish: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...usageField,
  });
  const parser = tools ? new ToolCallParser({ ...tools, newId: newCallId }) : null;
  const sendEvents = async (events: ToolCallEvent[]) => {
    for (const e of events) await sse.send(chunk(eventDelta(e), null));
  };
  sse.open();
  await sse.send(chunk({ role: "assistant", content: "", refusal: null }, null));
  try {
    for await (const ev of choice.events) {
      if (ev.type === "error") throw fromEngineError(ev.error);
      if (ev.type !== "delta") continue;
      if (ev.text) {
        if (parser) await sendEvents(parser.push(ev.text));
        else await sse.send(chunk({ content: ev.text }, null));
      }
      if (ev.finish && ev.usage) {
        meta.onUsage(ev.usage);
        if (parser) await sendEvents(parser.flush());
        await sse.send(chunk({}, chatFinish(ev.finish, parser?.callCount ?? 0)));
        if (meta.includeUsage) await sse.send({ ...base, choices: [], usage: usageJson(ev.usage) });
        break;
      }
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    await sse.send(err.toJSON());
  }
  await sse.done();
}
